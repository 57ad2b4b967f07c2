using AgileQuant.Core.Quantization;

namespace AgileQuant.Tests.Core.Quantization;

public class MinMaxObserverTests
{
    [Test]
    public void AccumulatesOverBatches_AndGivesFixedParameters()
    {
        var observer = new MinMaxObserver();
        observer.Observe([-1f, 2f, 0.5f]);
        observer.Observe([3f, -5f]);
        observer.Observe([10f, 4f]);
        Assert.That((observer.Min, observer.Max, observer.Count), Is.EqualTo((-5f, 10f, 7L)));

        // asymmetric 4-bit over [-5, 10]: s = 15/15 = 1, z = 5
        var asym = observer.GetParameters(4, symmetric: false);
        Assert.That((asym.Scale, asym.ZeroPoint), Is.EqualTo((1f, 5)));
        Assert.That(asym.Quantize(-5f), Is.EqualTo(0));
        Assert.That(asym.Quantize(10f), Is.EqualTo(15));

        // symmetric 8-bit: s = 10 / 127; half-range: s = 10 / 127.5
        Assert.That(observer.GetParameters(8, symmetric: true).Scale, Is.EqualTo(10f / 127f).Within(1e-8f));
        Assert.That(observer.GetParameters(8, true, SymmetricScaleConvention.MaxAbsOverHalfRange).Scale,
            Is.EqualTo(10f / 127.5f).Within(1e-8f));
    }

    [Test]
    public void PositiveOnlyCalibration_StillRepresentsZeroExactly()
    {
        var observer = new MinMaxObserver();
        observer.Observe([3f, 15f]);
        var p = observer.GetParameters(4, symmetric: false);
        Assert.That((p.Scale, p.ZeroPoint), Is.EqualTo((1f, 0)));
        Assert.That(p.Dequantize(p.Quantize(0f)), Is.EqualTo(0f));
    }

    [Test]
    public void NothingObserved_OrNonFinite_IsRefused()
    {
        var observer = new MinMaxObserver();
        Assert.Throws<InvalidOperationException>(() => observer.GetParameters(8, true));
        var ex = Assert.Throws<NonFiniteValueException>(() => observer.Observe([1f, 2f, float.NaN]));
        Assert.That(ex!.Column, Is.EqualTo(2));
        Assert.That(observer.Count, Is.Zero);
    }
}
