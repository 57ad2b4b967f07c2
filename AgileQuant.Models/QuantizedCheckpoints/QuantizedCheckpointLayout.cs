using System.Text.Json;
using System.Text.Json.Serialization;
using AgileQuant.Core;
using AgileQuant.Core.Quantization;
using AgileQuant.Core.Runtime;
using AgileQuant.Models.Architectures;

namespace AgileQuant.Models.QuantizedCheckpoints;

/// <summary>How one linear layer is stored: the <c>"agilequant.linears"</c> entry of its name.</summary>
internal sealed record LinearEntry
{
    /// <summary>Weight format: <see cref="QuantizedCheckpointLayout.Fp32Format"/>, <see cref="QuantizedCheckpointLayout.Int8RowFormat"/> or <see cref="QuantizedCheckpointLayout.Int4GroupFormat"/>.</summary>
    [JsonPropertyName("format")] public required string Format { get; init; }

    /// <summary>Input columns per scale group (4-bit only; 0 otherwise).</summary>
    [JsonPropertyName("group_size"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int GroupSize { get; init; }

    /// <summary>Symmetric codes (4-bit: nibble = code + 8, no zero-point tensor); always true for 8-bit rows.</summary>
    [JsonPropertyName("symmetric"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool Symmetric { get; init; }

    /// <summary>
    /// <see cref="LinearLayer.ActivationBits"/>; absent (null) when it equals the scheme's default
    /// (<see cref="QuantizedCheckpointLayout.DefaultActivationBits"/>), which keeps the header small.
    /// </summary>
    [JsonPropertyName("activation_bits"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? ActivationBits { get; init; }

    /// <summary><see cref="LinearLayer.LowBitActivationBits"/>.</summary>
    [JsonPropertyName("low_bit_activation_bits"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public int LowBitActivationBits { get; init; }

    /// <summary>
    /// <see cref="LinearLayer.HadamardInput"/>: the input is multiplied by the normalized Hadamard matrix of its width before
    /// the weight (a rotated model's down_proj); files with it carry <see cref="QuantizedCheckpointLayout.RotatedFormatVersion"/>.
    /// </summary>
    [JsonPropertyName("hadamard_input"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool HadamardInput { get; init; }

    /// <summary>Whether a <c>.bias</c> tensor is stored.</summary>
    [JsonPropertyName("bias"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool Bias { get; init; }

    /// <summary>LM head only: the weight is the token-embedding table itself (no tensor of its own).</summary>
    [JsonPropertyName("tied"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool Tied { get; init; }
}

/// <summary>The <c>"agilequant.runtime"</c> entry: how the quantized model ran beyond its weights (RuntimeOptions without kernels).</summary>
internal sealed record RuntimeEntry
{
    /// <summary><see cref="AttentionQuantization.QkvBits"/>.</summary>
    [JsonPropertyName("qkv_bits")] public required int QkvBits { get; init; }

    /// <summary><see cref="AttentionQuantization.KvCacheBits"/>.</summary>
    [JsonPropertyName("kv_cache_bits")] public required int KvCacheBits { get; init; }

    /// <summary><see cref="AttentionQuantization.Log2Softmax"/>.</summary>
    [JsonPropertyName("log2_softmax")] public required bool Log2Softmax { get; init; }

    /// <summary><see cref="RuntimeOptions.LowBitTokenRatio"/>.</summary>
    [JsonPropertyName("low_bit_token_ratio")] public required double LowBitTokenRatio { get; init; }
}

/// <summary>Names of metadata keys and formats shared by the quantized-checkpoint writer and reader; tensor names come from the family's description (GGUF-style, short so the header stays small).</summary>
internal static class QuantizedCheckpointLayout
{
    public const string FormatKey = "agilequant.format";
    public const string FormatVersion = "1";

    /// <summary>
    /// The version of a file with an online transform (<see cref="LinearEntry.HadamardInput"/>): a reader of version 1 only
    /// refuses it instead of running the model without the transform.
    /// </summary>
    public const string RotatedFormatVersion = "2";
    public const string TransformerConfigKey = "agilequant.transformer_config";
    public const string QuantizationConfigKey = "agilequant.quantization_config";
    public const string LinearsKey = "agilequant.linears";
    public const string RuntimeKey = "agilequant.runtime";
    public const string TokenizerKey = "agilequant.tokenizer";

    public static readonly string[] ReservedKeys = [FormatKey, TransformerConfigKey, QuantizationConfigKey, LinearsKey, RuntimeKey, TokenizerKey];

    public const string Fp32Format = "f32";
    public const string Int8RowFormat = "int8_row";
    public const string Int4GroupFormat = "int4_group";

    /// <summary>Activation bits of a linear whose entry has none: the scheme's, or 8 when its activations stay floating point (as ModelQuantizer sets them).</summary>
    public static int DefaultActivationBits(QuantizationConfig scheme) => scheme.QuantizesActivations ? scheme.ActivationBits : 8;

    /// <summary>The tensor names of the checkpoint of a <paramref name="family"/> model (<see cref="ArchitectureDescription.CheckpointNames"/>).</summary>
    /// <exception cref="AgileQuantException">The family is not in <see cref="ArchitectureRegistry"/>.</exception>
    public static TensorNameMap Names(string family) => ArchitectureRegistry.ForFamily(family).CheckpointNames;

    /// <summary>JSON for <see cref="TransformerConfig"/> (enums as names) and the linear table; strict on read.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter(allowIntegerValues: false) },
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };
}
