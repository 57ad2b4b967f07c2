using AgileQuant.Models.SafeTensors;
using static AgileQuant.Tests.Models.SafeTensors.RawSafeTensorsBytes;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>
/// Every one of the 65536 F16 and BF16 bit patterns read through <see cref="SafeTensorsFile.ReadFloat32(string)"/>
/// against a scalar reference: BF16 is the float32 whose upper half is the pattern (bit-exact, NaN payloads
/// included); F16 is <see cref="Half"/>'s own widening. One odd offset puts the data off 2-byte alignment.
/// </summary>
public sealed class SafeTensorsConversionTests() : TemporaryDirectoryFixture("aq-conversion-")
{
    [Test]
    public void AllSixteenBitPatternsWidenLikeTheScalarReference()
    {
        const int patterns = 1 << 16;
        byte[] data = new byte[1 + 2 * patterns * 2];
        for (int bits = 0; bits < patterns; bits++)
        {
            BitConverter.TryWriteBytes(data.AsSpan(1 + 2 * bits), (ushort)bits);
            BitConverter.TryWriteBytes(data.AsSpan(1 + 2 * patterns + 2 * bits), (ushort)bits);
        }
        string path = Temp.Write("patterns.safetensors", Build(Header(
            Entry("odd", "U8", [1], 0, 1),
            Entry("bf16", "BF16", [patterns], 1, 1 + 2 * patterns),
            Entry("f16", "F16", [256, 256], 1 + 2 * patterns, 1 + 4 * patterns)), data));
        using var file = SafeTensorsFile.Open(path);

        float[] bf16 = file.ReadFloat32("bf16");
        float[] f16 = file.ReadFloat32("f16");
        for (int bits = 0; bits < patterns; bits++)
        {
            uint expectedBf16 = (uint)bits << 16;
            if (BitConverter.SingleToUInt32Bits(bf16[bits]) != expectedBf16)
                Assert.Fail($"BF16 0x{bits:X4}: expected bits 0x{expectedBf16:X8}, found 0x{BitConverter.SingleToUInt32Bits(bf16[bits]):X8}");
            float expectedF16 = (float)BitConverter.UInt16BitsToHalf((ushort)bits);
            bool same = float.IsNaN(expectedF16) ? float.IsNaN(f16[bits]) : BitConverter.SingleToUInt32Bits(f16[bits]) == BitConverter.SingleToUInt32Bits(expectedF16);
            if (!same) Assert.Fail($"F16 0x{bits:X4}: expected {expectedF16:R}, found {f16[bits]:R}");
        }
        Assert.That(file.Get("bf16").DataOffset % 2, Is.EqualTo(1), "data deliberately unaligned");
    }
}
