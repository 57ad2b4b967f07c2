using AgileQuant.Intrinsics.Diagnostics;
using AgileQuant.Intrinsics.Formats;

namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// The pinned, huge-page-advised arrays of the weight copies (<see cref="HugePages"/>): the advice never changes what the
/// arrays hold, and <see cref="MachineLimits.AnonHugePageBytes"/> reads a sane figure.
/// </summary>
public sealed class HugePagesTests
{
    [Test]
    public void ZeroedArraySpanningSeveralHugePagesIsZeroAndKeepsItsContentsThroughCollapse()
    {
        // 5 MiB + 3 bytes: at least one whole 2 MiB-aligned page inside, ragged ends on both sides.
        const int length = 5 * HugePages.PageBytes / 2 + 3;
        byte[] bytes = HugePages.AllocatePinned<byte>(length, zeroed: true);
        Assert.That(bytes, Has.Length.EqualTo(length));
        Assert.That(bytes.AsSpan().IndexOfAnyExcept((byte)0), Is.EqualTo(-1), "a zeroed array holds only zeros");
        for (int i = 0; i < length; i++) bytes[i] = (byte)(i * 31 + 7);
        HugePages.Collapse(bytes);
        for (int i = 0; i < length; i++)
            if (bytes[i] != (byte)(i * 31 + 7)) Assert.Fail($"byte {i} changed by the collapse");
    }

    [Test]
    public void UninitializedFloatArrayHoldsWhatIsWrittenAndSmallArraysAreLeftAlone()
    {
        float[] values = HugePages.AllocatePinned<float>(HugePages.PageBytes / sizeof(float) * 3, zeroed: false);
        for (int i = 0; i < values.Length; i++) values[i] = i * 0.5f;
        HugePages.Collapse(values);
        Assert.That(values[^1], Is.EqualTo((values.Length - 1) * 0.5f));
        Assert.That(values[HugePages.PageBytes / sizeof(float)], Is.EqualTo(HugePages.PageBytes / sizeof(float) * 0.5f));
        short[] small = HugePages.AllocatePinned<short>(17, zeroed: true);
        HugePages.Collapse(small);
        Assert.That(small, Is.All.EqualTo((short)0));
    }

    [Test]
    public void AnonHugePageBytesIsAWholeNumberOfKibibytes()
    {
        long bytes = MachineLimits.AnonHugePageBytes();
        Assert.That(bytes, Is.GreaterThanOrEqualTo(0));
        Assert.That(bytes % 1024, Is.Zero);
        if (OperatingSystem.IsLinux() && File.Exists("/proc/self/smaps_rollup"))
            Assert.That(File.ReadAllText("/proc/self/smaps_rollup"), Does.Contain("AnonHugePages:"), "the field the figure is read from");
    }
}
