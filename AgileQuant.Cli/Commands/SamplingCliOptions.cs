using System.CommandLine;
using AgileQuant.Core.Generation;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// Generation options shared by generate, chat, demo and serve: length, sampling (llama.cpp's defaults: temperature 0.8,
/// top-k 40, top-p 0.95, min-p 0.05), penalties, stop strings and seed.
/// </summary>
internal sealed class SamplingCliOptions
{
    private static readonly SamplingOptions Defaults = SamplingOptions.LlamaCppDefaults;

    public Option<int> MaxTokens { get; }
    public Option<float> Temperature { get; } = new("--temperature") { Description = $"Sampling temperature; 0 = greedy (default {Defaults.Temperature}).", DefaultValueFactory = _ => Defaults.Temperature };
    public Option<int> TopK { get; } = new("--top-k") { Description = $"Sample only from the K most likely tokens; 0 = all (default {Defaults.TopK}).", DefaultValueFactory = _ => Defaults.TopK };
    public Option<float> TopP { get; } = new("--top-p") { Description = $"Nucleus sampling: the smallest set of tokens with probability ≥ P; 1 = all (default {Defaults.TopP}).", DefaultValueFactory = _ => Defaults.TopP };
    public Option<float> MinP { get; } = new("--min-p") { Description = $"Drop tokens less likely than P times the most likely one; 0 = off (default {Defaults.MinP}).", DefaultValueFactory = _ => Defaults.MinP };
    public Option<float> RepeatPenalty { get; } = new("--repeat-penalty") { Description = "Penalize tokens seen in the last --repeat-last-n tokens (logit / R when positive, · R otherwise); 1 = off (default).", DefaultValueFactory = _ => 1f };
    public Option<int> RepeatLastN { get; } = new("--repeat-last-n") { Description = "How many of the latest tokens, prompt included, the penalties look at; 0 = none (default 64).", DefaultValueFactory = _ => 64 };
    public Option<float> FrequencyPenalty { get; } = new("--frequency-penalty") { Description = "Subtract F from a token's logit per occurrence in the window, in [-2, 2]; 0 = off (default).", DefaultValueFactory = _ => 0f };
    public Option<float> PresencePenalty { get; } = new("--presence-penalty") { Description = "Subtract P from the logit of every token present in the window, in [-2, 2]; 0 = off (default).", DefaultValueFactory = _ => 0f };
    public Option<string[]> Stop { get; } = new("--stop") { Description = "Stop when this text appears (not printed); repeat the option for several.", DefaultValueFactory = _ => [] };
    public Option<int> Seed { get; } = new("--seed") { Description = "Random seed; the same seed gives the same text (default 42).", DefaultValueFactory = _ => 42 };

    public SamplingCliOptions(string maxTokensDescription = "Most tokens to generate (default 256).") =>
        MaxTokens = new("--max-tokens") { Description = maxTokensDescription, DefaultValueFactory = _ => 256 };

    public void AddTo(Command command)
    {
        foreach (Option option in new Option[] { MaxTokens, Temperature, TopK, TopP, MinP, RepeatPenalty, RepeatLastN, FrequencyPenalty, PresencePenalty, Stop, Seed })
            command.Options.Add(option);
    }

    /// <summary>The sampling settings, validated; a bad value is an <see cref="InvalidOptionException"/> naming its option.</summary>
    public SamplingOptions ReadSampling(ParseResult parse)
    {
        var sampling = new SamplingOptions
        {
            Temperature = parse.GetValue(Temperature),
            TopK = parse.GetValue(TopK),
            TopP = parse.GetValue(TopP),
            MinP = parse.GetValue(MinP),
            RepetitionPenalty = parse.GetValue(RepeatPenalty),
            PenaltyWindow = parse.GetValue(RepeatLastN),
            FrequencyPenalty = parse.GetValue(FrequencyPenalty),
            PresencePenalty = parse.GetValue(PresencePenalty),
            Seed = parse.GetValue(Seed),
        };
        try
        {
            sampling.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            string option = e.ParamName switch
            {
                nameof(SamplingOptions.Temperature) => Temperature.Name,
                nameof(SamplingOptions.TopK) => TopK.Name,
                nameof(SamplingOptions.TopP) => TopP.Name,
                nameof(SamplingOptions.MinP) => MinP.Name,
                nameof(SamplingOptions.RepetitionPenalty) => RepeatPenalty.Name,
                nameof(SamplingOptions.PenaltyWindow) => RepeatLastN.Name,
                nameof(SamplingOptions.FrequencyPenalty) => FrequencyPenalty.Name,
                nameof(SamplingOptions.PresencePenalty) => PresencePenalty.Name,
                _ => e.ParamName ?? "a sampling option",
            };
            throw new InvalidOptionException($"{option}: {CliErrors.OneLine(e)}");
        }
        return sampling;
    }

    /// <summary>--max-tokens, validated (≥ 0).</summary>
    public int ReadMaxTokens(ParseResult parse)
    {
        int max = parse.GetValue(MaxTokens);
        return max >= 0 ? max : throw new InvalidOptionException($"--max-tokens must be ≥ 0, found {max}.");
    }

    /// <summary>Every option read and validated; end tokens are the model's (set when it is loaded).</summary>
    public GenerationOptions Read(ParseResult parse)
    {
        string[] stops = parse.GetValue(Stop) ?? [];
        if (stops.Any(s => s.Length == 0)) throw new InvalidOptionException("--stop needs a non-empty text.");
        foreach (string stop in stops) Utf8Text.RequireValidArgument(stop, "--stop");
        return new GenerationOptions { Sampling = ReadSampling(parse), MaxTokens = ReadMaxTokens(parse), StopSequences = stops };
    }
}
