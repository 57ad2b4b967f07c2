using System.Buffers.Binary;
using System.Text;

namespace AgileQuant.Tests.Models.SafeTensors;

/// <summary>
/// Builds safetensors bytes by hand (8-byte LE header length, JSON header, data), independent of
/// <c>SafeTensorsWriter</c>, so tests can state exactly which bytes a reader sees, malformed ones included.
/// </summary>
public static class RawSafeTensorsBytes
{
    /// <summary>Header length field + UTF-8 <paramref name="headerJson"/> + <paramref name="data"/>; the length field may lie.</summary>
    public static byte[] Build(string headerJson, byte[] data, ulong? headerLengthField = null)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        return Build(header, data, headerLengthField);
    }

    /// <summary>As <see cref="Build(string, byte[], ulong?)"/> with raw header bytes.</summary>
    public static byte[] Build(byte[] header, byte[] data, ulong? headerLengthField = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLengthField ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    /// <summary>One header entry: <c>"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]}</c>.</summary>
    public static string Entry(string name, string dtype, long[] shape, long begin, long end) =>
        $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{begin},{end}]}}";

    /// <summary>A header object from entries.</summary>
    public static string Header(params string[] entries) => "{" + string.Join(",", entries) + "}";

    /// <summary>Little-endian float32 bytes of <paramref name="values"/>.</summary>
    public static byte[] Float32Bytes(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }
}
