using System.Buffers.Binary;
using System.Text;

namespace AgileQuant.Models.Tokenizers;

/// <summary>
/// Reads the parts of a SentencePiece <c>tokenizer.model</c> (protobuf <c>ModelProto</c>,
/// google/sentencepiece src/sentencepiece_model.proto) that a BPE tokenizer needs: the pieces with score
/// and type (field 1), the special ids and model type of <c>trainer_spec</c> (field 2) and the
/// normalization switches of <c>normalizer_spec</c> (field 3). Every length is checked against the bytes left.
/// </summary>
internal static class SentencePieceModelReader
{
    internal const long MaxFileBytes = 1L << 30;

    /// <summary>What <see cref="Read"/> found.</summary>
    internal sealed record Model(
        List<string> Pieces, List<float> Scores, List<int> Types,
        int ModelType, int UnknownId, int BosId, int EosId,
        string NormalizerName, bool AddDummyPrefix, bool RemoveExtraWhitespaces, bool EscapeWhitespaces);

    public static Model Read(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException(path, null, "expected a SentencePiece model file, found no file");
        byte[] data = GuardedFile.ReadAllBytes(path, MaxFileBytes);

        var pieces = new List<string>();
        var scores = new List<float>();
        var types = new List<int>();
        // proto2 defaults of TrainerSpec and NormalizerSpec.
        int modelType = 1, unknownId = 0, bosId = 1, eosId = 2;
        string normalizerName = "nmt_nfkc";
        bool addDummyPrefix = true, removeExtraWhitespaces = true, escapeWhitespaces = true;

        var model = new ProtoReader(path, data, 0, data.Length, "ModelProto");
        while (model.Next(out int field, out int wire))
        {
            switch (field, wire)
            {
                case (1, 2):
                    ProtoReader pieceMessage = model.Message($"piece {pieces.Count}");
                    string piece = "";
                    float score = 0f;
                    int type = 1;
                    while (pieceMessage.Next(out int f, out int w))
                    {
                        switch (f, w)
                        {
                            case (1, 2): piece = pieceMessage.String(); break;
                            case (2, 5): score = pieceMessage.Float(); break;
                            case (3, 0): type = (int)pieceMessage.Varint(); break;
                            default: pieceMessage.Skip(w); break;
                        }
                    }
                    pieces.Add(piece);
                    scores.Add(score);
                    types.Add(type);
                    break;
                case (2, 2):
                    ProtoReader trainer = model.Message("trainer_spec");
                    while (trainer.Next(out int f, out int w))
                    {
                        switch (f, w)
                        {
                            case (3, 0): modelType = (int)trainer.Varint(); break;
                            case (40, 0): unknownId = (int)trainer.Varint(); break;
                            case (41, 0): bosId = (int)trainer.Varint(); break;
                            case (42, 0): eosId = (int)trainer.Varint(); break;
                            default: trainer.Skip(w); break;
                        }
                    }
                    break;
                case (3, 2):
                    ProtoReader normalizer = model.Message("normalizer_spec");
                    while (normalizer.Next(out int f, out int w))
                    {
                        switch (f, w)
                        {
                            case (1, 2): normalizerName = normalizer.String(); break;
                            case (3, 0): addDummyPrefix = normalizer.Varint() != 0; break;
                            case (4, 0): removeExtraWhitespaces = normalizer.Varint() != 0; break;
                            case (5, 0): escapeWhitespaces = normalizer.Varint() != 0; break;
                            default: normalizer.Skip(w); break;
                        }
                    }
                    break;
                default:
                    model.Skip(wire);
                    break;
            }
        }
        return new Model(pieces, scores, types, modelType, unknownId, bosId, eosId,
            normalizerName, addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces);
    }

    /// <summary>Protobuf wire-format reader over one message's bytes [start, end).</summary>
    private sealed class ProtoReader(string path, byte[] data, int start, int end, string what)
    {
        private int _position = start;

        private ModelFormatException Error(string problem) => new(path, null, $"{what}: {problem} at byte {_position}");

        public bool Next(out int field, out int wire)
        {
            field = wire = 0;
            if (_position >= end) return false;
            ulong key = Varint();
            wire = (int)(key & 7);
            if (key >> 3 is 0 or > int.MaxValue) throw Error($"expected a field number in 1..{int.MaxValue}, found {key >> 3}");
            field = (int)(key >> 3);
            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_position >= end) throw Error("expected a varint byte, found the end of the message (truncated)");
                byte b = data[_position++];
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
            throw Error("expected a varint of at most 10 bytes, found a longer one");
        }

        public float Float()
        {
            if (end - _position < 4) throw Error("expected 4 bytes of float, found fewer (truncated)");
            float value = BinaryPrimitives.ReadSingleLittleEndian(data.AsSpan(_position, 4));
            _position += 4;
            return value;
        }

        private (int Start, int Length) LengthDelimited()
        {
            ulong length = Varint();
            if (length > (ulong)(end - _position)) throw Error($"expected {length} bytes of a length-delimited field, found {end - _position} (truncated)");
            int begin = _position;
            _position += (int)length;
            return (begin, (int)length);
        }

        public string String()
        {
            (int begin, int length) = LengthDelimited();
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data, begin, length);
            }
            catch (DecoderFallbackException e)
            {
                throw new ModelFormatException(path, null, $"{what}: expected UTF-8 text at byte {begin}, found invalid bytes", e);
            }
        }

        public ProtoReader Message(string name)
        {
            (int begin, int length) = LengthDelimited();
            return new ProtoReader(path, data, begin, begin + length, name);
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: Varint(); break;
                case 1: Advance(8); break;
                case 2: LengthDelimited(); break;
                case 5: Advance(4); break;
                default: throw Error($"expected wire type 0, 1, 2 or 5, found {wire}");
            }
        }

        private void Advance(int count)
        {
            if (end - _position < count) throw Error($"expected {count} more bytes, found {end - _position} (truncated)");
            _position += count;
        }
    }
}
