using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace AgileQuant.Models.SafeTensors;

/// <summary>Conversion of F32/F16/BF16 tensor bytes to float32.</summary>
internal static class SafeTensorsFloatConversion
{
    /// <summary>Throws <see cref="ModelFormatException"/> unless the tensor's dtype converts to float32.</summary>
    public static void RequireFloat(SafeTensorInfo info)
    {
        if (!SafeTensorsDTypes.IsReadableAsFloat32(info.DType))
            throw new ModelFormatException(info.FilePath, info.Name,
                $"expected dtype F32, F16 or BF16 to read as float32, found {info.DType}");
    }

    /// <summary>destination[i] = (float)source[i], source holding little-endian F32, F16 or BF16 elements.</summary>
    public static void ToSingle(SafeTensorsDType dtype, ReadOnlySpan<byte> source, Span<float> destination)
    {
        switch (dtype)
        {
            case SafeTensorsDType.F32:
                MemoryMarshal.Cast<byte, float>(source).CopyTo(destination);
                break;
            case SafeTensorsDType.F16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(source), destination);
                break;
            case SafeTensorsDType.BF16:
                BFloat16ToSingle(MemoryMarshal.Cast<byte, ushort>(source), destination);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "expected F32, F16 or BF16");
        }
    }

    // destination[i] = bits(source[i] << 16): bfloat16 is the upper half of a float32.
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination too short", nameof(destination));
        Span<uint> bits = MemoryMarshal.Cast<float, uint>(destination);
        int i = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            ref ushort sourceRef = ref MemoryMarshal.GetReference(source);
            ref uint bitsRef = ref MemoryMarshal.GetReference(bits);
            for (; i <= source.Length - Vector128<ushort>.Count; i += Vector128<ushort>.Count)
            {
                (Vector128<uint> lower, Vector128<uint> upper) = Vector128.Widen(Vector128.LoadUnsafe(ref sourceRef, (nuint)i));
                Vector128.ShiftLeft(lower, 16).StoreUnsafe(ref bitsRef, (nuint)i);
                Vector128.ShiftLeft(upper, 16).StoreUnsafe(ref bitsRef, (nuint)(i + Vector128<uint>.Count));
            }
        }
        for (; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }
}
