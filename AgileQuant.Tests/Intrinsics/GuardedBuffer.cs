namespace AgileQuant.Tests.Intrinsics;

/// <summary>
/// A buffer sliced from the middle of a larger array whose margins hold a sentinel, so a kernel that
/// writes (or reads, when the sentinel is NaN) outside the slice is caught.
/// </summary>
internal sealed class GuardedBuffer
{
    private const int Margin = 37;
    private readonly float[] _storage;
    private readonly float _sentinel;

    public GuardedBuffer(int length, float sentinel, float fill)
    {
        _storage = new float[length + 2 * Margin];
        _sentinel = sentinel;
        Array.Fill(_storage, sentinel);
        Inner.Fill(fill);
        Length = length;
    }

    /// <summary>Wraps a copy of <paramref name="values"/> between NaN margins (for inputs).</summary>
    public static GuardedBuffer Around(ReadOnlySpan<float> values)
    {
        var buffer = new GuardedBuffer(values.Length, float.NaN, 0f);
        values.CopyTo(buffer.Inner);
        return buffer;
    }

    public int Length { get; }

    public Span<float> Inner => _storage.AsSpan(Margin, Length);

    /// <summary>Asserts the margins still hold the sentinel.</summary>
    public void AssertMarginsIntact(string what)
    {
        for (int i = 0; i < Margin; i++)
        {
            Assert.That(_storage[i], Is.EqualTo(_sentinel), $"{what}: write before the buffer at offset {i - Margin}");
            Assert.That(_storage[Margin + Length + i], Is.EqualTo(_sentinel), $"{what}: write past the buffer at offset {Length + i}");
        }
    }
}
