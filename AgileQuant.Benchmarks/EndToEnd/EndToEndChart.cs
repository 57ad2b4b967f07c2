using AgileQuant.Cli.Bench;
using ScottPlot;

namespace AgileQuant.Benchmarks.EndToEnd;

/// <summary>
/// The table as a PNG (ScottPlot 5, rendered headless through SkiaSharp): for every shape and engine, prefill (longest
/// length) and decode speed as multiples of llama.cpp Q4_0 in the same run, with a line at 1×.
/// </summary>
internal static class EndToEndChart
{
    /// <summary>Writes the chart of <paramref name="sections"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyList<(SyntheticModelShape Shape, IReadOnlyList<EngineResult> Results)> sections)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(sections);
        var plot = new Plot();
        var bars = new List<Bar>();
        var ticks = new List<Tick>();
        Color prefillColor = Colors.SteelBlue, decodeColor = Colors.DarkOrange;
        double x = 0;
        foreach ((SyntheticModelShape shape, IReadOnlyList<EngineResult> results) in sections)
        {
            EngineResult q4 = results.First(r => r.Engine.Name == "llama.cpp Q4_0");
            foreach (EngineResult r in results)
            {
                double prefill = r.PrefillTokensPerSecond[^1] / q4.PrefillTokensPerSecond[^1];
                double decode = r.DecodeTokensPerSecond / q4.DecodeTokensPerSecond;
                bars.Add(new Bar { Position = x - 0.2, Value = prefill, FillColor = prefillColor, Size = 0.4 });
                bars.Add(new Bar { Position = x + 0.2, Value = decode, FillColor = decodeColor, Size = 0.4 });
                ticks.Add(new Tick(x, sections.Count > 1 ? $"{shape.Name}: {r.Engine.Name}" : r.Engine.Name, true));
                x += 1;
            }
            x += 0.5;
        }
        plot.Add.Bars(bars);
        plot.Add.HorizontalLine(1, 1, Colors.Black, LinePattern.Dashed);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 35;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        plot.Axes.Bottom.MinimumSize = 170;
        plot.Axes.Margins(bottom: 0);
        plot.YLabel("tokens/s ÷ llama.cpp Q4_0 (same run)");
        plot.Title("Prefill (blue, longest prompt) and decode (orange) speed, relative to llama.cpp Q4_0");
        plot.Legend.IsVisible = true;
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "prefill", FillColor = prefillColor });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "decode", FillColor = decodeColor });
        plot.Legend.Alignment = Alignment.UpperRight;
        plot.SavePng(path, Math.Max(900, 90 * (int)x + 200), 650);
    }
}
