using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using AgileQuant.Core;
using AgileQuant.Intrinsics;
using AgileQuant.Intrinsics.Diagnostics;
using AgileQuant.Intrinsics.Formats;
using AgileQuant.Models.Gguf;

namespace AgileQuant.Cli.Commands;

/// <summary><c>agilequant bench kernel</c>: the quick, scriptable kernel benchmark (BenchmarkDotNet suites are in AgileQuant.Benchmarks).</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var bench = new Command("bench", "Benchmarks: `bench kernel` times one matrix multiplication shape and format; `bench e2e` times whole synthetic models loaded from GGUF.");
        bench.Subcommands.Add(CreateKernel());
        bench.Subcommands.Add(BenchEndToEndCommand.Create());
        return bench;
    }

    private static Command CreateKernel()
    {
        var op = new Option<string>("--op") { Description = "gemv (1 token, weights streamed from memory) or gemm (--tokens tokens).", DefaultValueFactory = _ => "gemv" };
        op.AcceptOnlyFromAmong("gemv", "gemm");
        var shape = new Option<string>("--shape") { Description = "OUTxIN, e.g. 4096x11008.", Required = true };
        var tokens = new Option<int>("--tokens") { Description = "Tokens for gemm.", DefaultValueFactory = _ => 128 };
        var format = new Option<string>("--format")
        {
            Description = "FP32, W8A8, W4A8 or W4A4 (4-bit: asymmetric groups of 32 with float scales), or a GGUF weight type as it loads, with 8-bit activations: "
                + "Q4_0 (symmetric groups of 32, fp16 scales), Q4_1, Q4_K, Q3_K, Q2_K, IQ4_NL, IQ4_XS (super-block 4-bit formats), "
                + "Q8_0, Q6_K, Q5_K, Q5_1, Q5_0 (grouped 8-bit weights).",
            DefaultValueFactory = _ => "W4A8",
        };
        string[] formats = ["FP32", "W8A8", "W4A8", "W4A4", "Q4_0", .. SuperBlockTypes, .. GroupedInt8Types];
        format.AcceptOnlyFromAmong([.. formats, .. formats.Select(f => f.ToLowerInvariant())]);
        var threads = new Option<int>("--threads") { Description = "Threads (0 = one per processor).", DefaultValueFactory = _ => 0 };
        var kernelOption = ModelOptions.KernelOption();
        var repeats = new Option<int>("--repeats") { Description = "Timed repetitions (the median is reported).", DefaultValueFactory = _ => 21 };
        var json = new Option<bool>("--json") { Description = "Print one JSON object: seconds_median, gbps (weight bytes read per second), gops, read_gbps (this run's memory read bandwidth, GEMV: the larger of read_gbps_small_pages and read_gbps_huge_pages), int8_peak_gops (this run's int8 multiply-add peak, integer GEMM), fma_peak_gflops (FP32 FMA peak, GEMM), int16_madd_peak_gops (vpmaddwd peak, W8 GEMM), ..." };
        var command = new Command("kernel", "Time one kernel: weights of the given shape and format multiplied by random activations; reports the median, GB/s of weights and GOPS, next to the memory read bandwidth measured in the same run.");
        foreach (Option o in new Option[] { op, shape, tokens, format, threads, kernelOption, repeats, json }) command.Options.Add(o);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            (int rows, int cols) = ParseShape(parse.GetValue(shape)!);
            bool gemv = parse.GetValue(op) == "gemv";
            int n = gemv ? 1 : parse.GetValue(tokens);
            if (n <= 0) throw new AgileQuantException("--tokens must be positive.");
            string fmt = parse.GetValue(format)!.ToUpperInvariant();
            int reps = Math.Max(3, parse.GetValue(repeats));
            var kernelOptions = ModelOptions.ReadKernelOptions(parse, kernelOption, threads) with { ActivationBits = fmt == "W4A4" ? 4 : 8 };
            KernelSet kernel = KernelSelector.Create(kernelOptions);
            var random = new Random(1);
            IWeightMatrix first = Make(fmt, rows, cols, random);
            // GEMV must stream weights from DRAM: cycle through enough copies to exceed any cache (≥ 512 MB).
            int copies = gemv ? (int)Math.Clamp(512L * 1024 * 1024 / first.ByteCount + 1, 1, 64) : 1;
            var weights = new IWeightMatrix[copies];
            weights[0] = first;
            for (int i = 1; i < copies; i++) weights[i] = Make(fmt, rows, cols, random);
            foreach (IWeightMatrix w in weights) kernel.Prepare(w); // repacked for the kernel as at model load, not in a timed call
            float[] x = Enumerable.Range(0, n * cols).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            float[] y = new float[n * rows];
            for (int i = 0; i < Math.Min(copies, 3); i++) kernel.MatMul(weights[i], x, y, n); // warm-up
            var times = new double[reps];
            using (var bar = new ProgressLine("timing"))
            {
                for (int r = 0; r < reps; r++)
                {
                    cancel.ThrowIfCancellationRequested();
                    long start = Stopwatch.GetTimestamp();
                    kernel.MatMul(weights[r % copies], x, y, n);
                    times[r] = Stopwatch.GetElapsedTime(start).TotalSeconds;
                    bar.Report(r + 1, reps, "repeats");
                }
            }
            Array.Sort(times);
            double median = times[reps / 2];
            double gbps = first.ByteCount / median / 1e9, gops = 2.0 * rows * cols * n / median / 1e9;
            // Weights sit on huge pages where Linux allows (see MachineLimits.AnonHugePageBytes), so the bound is the larger
            // of the two probes: against the small-page one alone a stream on huge pages could pass 100%.
            long hugePageBytes = MachineLimits.AnonHugePageBytes();
            double smallPageGbps = gemv ? MachineLimits.ReadBandwidthGBps(kernel.Threads) : double.NaN;
            double hugePageGbps = gemv ? MachineLimits.HugePageReadBandwidthGBps(kernel.Threads) : double.NaN;
            double readGbps = Math.Max(smallPageGbps, hugePageGbps);
            double peakGops = !gemv && fmt != "FP32" ? MachineLimits.Int8PeakGops(kernel.Threads) : double.NaN;
            // GEMM bounds besides the int8 one: the FP32 FMA peak (FP32's own, and the yardstick of the integer formats'
            // "x FP32" ratios) and, for W8 weights, the int16 multiply-add peak that bounds the W8 kernels' int16 route.
            double fmaPeakGflops = !gemv ? MachineLimits.FmaPeakGflops(kernel.Threads) : double.NaN;
            double int16PeakGops = !gemv && (fmt.StartsWith("W8", StringComparison.Ordinal) || fmt.StartsWith('Q')) ? MachineLimits.Int16MultiplyAddPeakGops(kernel.Threads) : double.NaN;
            if (parse.GetValue(json))
            {
                var fields = new Dictionary<string, object?>
                {
                    ["op"] = gemv ? "gemv" : "gemm", ["rows"] = rows, ["cols"] = cols, ["tokens"] = n, ["format"] = fmt,
                    ["kernel"] = kernel.KernelFor(first).Name, ["threads"] = kernel.Threads, ["repeats"] = reps,
                    ["seconds_median"] = median, ["seconds_min"] = times[0], ["weight_bytes"] = first.ByteCount,
                    ["gbps"] = gbps, ["gops"] = gops,
                };
                if (gemv)
                {
                    fields["read_gbps"] = readGbps; fields["bandwidth_fraction"] = gbps / readGbps; fields["weight_copies"] = copies;
                    fields["read_gbps_small_pages"] = smallPageGbps; fields["read_gbps_huge_pages"] = hugePageGbps;
                    fields["anon_huge_pages_mb"] = hugePageBytes / (1024.0 * 1024.0);
                }
                if (double.IsFinite(peakGops)) { fields["int8_peak_gops"] = peakGops; fields["peak_fraction"] = gops / peakGops; }
                if (double.IsFinite(fmaPeakGflops)) fields["fma_peak_gflops"] = fmaPeakGflops;
                if (double.IsFinite(int16PeakGops)) { fields["int16_madd_peak_gops"] = int16PeakGops; fields["int16_peak_fraction"] = gops / int16PeakGops; }
                Console.Out.WriteLine(JsonSerializer.Serialize(fields));
            }
            else
            {
                var inv = System.Globalization.CultureInfo.InvariantCulture;
                var table = new TextTable("op", "shape", "tokens", "format", "kernel", "threads", "median ms", "min ms", "GB/s weights", "GOPS");
                table.Add(gemv ? "gemv" : "gemm", $"{rows}x{cols}", n.ToString(inv), fmt, kernel.KernelFor(first).Name, kernel.Threads.ToString(inv),
                    (median * 1e3).ToString("F3", inv), (times[0] * 1e3).ToString("F3", inv), gbps.ToString("F1", inv), gops.ToString("F1", inv));
                table.WriteTo(Console.Out);
                if (gemv)
                    Console.Out.WriteLine($"Memory read bandwidth in this run: {readGbps.ToString("F1", inv)} GB/s (small pages {smallPageGbps.ToString("F1", inv)}, huge pages {hugePageGbps.ToString("F1", inv)}); "
                        + $"the kernel streams weights at {(gbps / readGbps).ToString("P0", inv)} of it ({(hugePageBytes / (1024.0 * 1024.0)).ToString("F0", inv)} MiB of this process on huge pages).");
                if (!gemv && double.IsFinite(peakGops)) Console.Out.WriteLine($"Int8 multiply-add peak in this run: {peakGops.ToString("F1", inv)} GOPS; the kernel reaches {(gops / peakGops).ToString("P0", inv)} of it.");
                if (double.IsFinite(int16PeakGops)) Console.Out.WriteLine($"Int16 multiply-add peak (bound of the W8 int16 route) in this run: {int16PeakGops.ToString("F1", inv)} GOPS; the kernel reaches {(gops / int16PeakGops).ToString("P0", inv)} of it.");
                if (double.IsFinite(fmaPeakGflops)) Console.Out.WriteLine($"FP32 FMA peak in this run: {fmaPeakGflops.ToString("F1", inv)} GFLOPS.");
            }
            return ExitCodes.Success;
        }));
        return command;
    }

    // What a GGUF Q4_0 tensor loads as: symmetric codes in groups of 32 with fp16 scales (so the decode stream reads the half copy),
    // taking per-group activation scales as the loader's matrices do.
    private static PackedInt4Matrix GgufQ4_0(int rows, int cols, Random random)
    {
        if (cols % 32 != 0) throw new AgileQuantException($"Q4_0 rows are whole blocks of 32 columns; --shape has {cols}.");
        var codes = new sbyte[(long)rows * cols];
        for (long i = 0; i < codes.Length; i++) codes[i] = (sbyte)random.Next(-8, 8);
        float[] scales = Enumerable.Range(0, rows * (cols / 32)).Select(_ => (float)(Half)(0.01f + 0.01f * random.NextSingle())).ToArray();
        PackedInt4Matrix w = PackedInt4Matrix.FromSymmetricCodes(codes, scales, rows, cols, 32);
        return PackedInt4Matrix.FromPacked(w.Packed, w.Scales, [], rows, cols, 32, takesActivationGroupScales: true);
    }

    // What a GGUF tensor of `type` loads as: random codes, sub-block scales (and minimums) within the type's ranges, fp16 super-block scales.
    private static SuperBlockInt4Matrix SuperBlocks(GgmlType type, int rows, int cols, Random random)
    {
        SuperBlockInt4Scheme scheme = GgmlTypeTraits.Find(type)!.SuperBlockScheme!;
        if (cols % scheme.SuperBlockSize != 0) throw new AgileQuantException($"{type} rows are whole blocks of {scheme.SuperBlockSize} columns; --shape has {cols}.");
        var packed = new byte[(long)rows * cols / 2];
        random.NextBytes(packed);
        int subBlocks = rows * (cols / scheme.SubBlockSize), superBlocks = rows * (cols / scheme.SuperBlockSize);
        sbyte[] subScales = Enumerable.Range(0, subBlocks).Select(_ => (sbyte)(scheme.SuperBlockSize == scheme.SubBlockSize ? 1 : random.Next(-31, 32))).ToArray();
        byte[] subMins = scheme.HasMins ? Enumerable.Range(0, subBlocks).Select(_ => (byte)random.Next(64)).ToArray() : [];
        Half[] Halves(int n) => Enumerable.Range(0, n).Select(_ => (Half)(0.001f + 0.001f * random.NextSingle())).ToArray();
        return SuperBlockInt4Matrix.Create(scheme, rows, cols, packed, Halves(superBlocks), scheme.HasMins ? Halves(superBlocks) : [], subScales, subMins);
    }

    internal static (int Rows, int Cols) ParseShape(string text)
    {
        string[] parts = text.ToLowerInvariant().Split('x');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int rows) || !int.TryParse(parts[1], out int cols) || rows <= 0 || cols <= 0)
            throw new AgileQuantException($"--shape must look like 4096x11008 (OUTxIN), found '{text}'.");
        return (rows, cols);
    }

    // Grouped 8-bit weights in the layout of the GGUF type `format` (codes in its range, half scales where the type's are,
    // super-block scales for the k-quants), so the kernels stream the bytes they stream for a file of that type.
    private static GroupedInt8Matrix GroupedWeights(string format, int rows, int cols, Random random)
    {
        (int low, int high, int groupSize, int perSuper, bool offsets) = format switch
        {
            "Q8_0" => (-127, 127, 32, 1, false),
            "Q6_K" => (-32, 31, 16, 16, false),
            "Q5_K" => (0, 31, 32, 8, true),
            "Q5_1" => (0, 31, 32, 1, true),
            _ => (-16, 15, 32, 1, false),
        };
        if (perSuper > 1 && cols % (groupSize * perSuper) != 0)
            throw new AgileQuantException($"--format {format} needs rows of whole 256-column super-blocks, found {cols} columns.");
        var codes = new sbyte[(long)rows * cols];
        for (long i = 0; i < codes.Length; i++) codes[i] = (sbyte)random.Next(low, high + 1);
        int groups = (cols + groupSize - 1) / groupSize, supers = (groups + perSuper - 1) / perSuper;
        float[] Halves(int n) => Enumerable.Range(0, n).Select(_ => (float)(Half)(0.001f + 0.01f * random.NextSingle())).ToArray();
        sbyte[] Subs(int n) => Enumerable.Range(0, n).Select(_ => (sbyte)random.Next(1, 64)).ToArray();
        return perSuper == 1
            ? GroupedInt8Matrix.FromGroupScales(codes, Halves(rows * groups), offsets ? Halves(rows * groups) : [], rows, cols, groupSize)
            : GroupedInt8Matrix.FromSuperBlockScales(codes, Halves(rows * supers), Subs(rows * groups), offsets ? Halves(rows * supers) : [], offsets ? Subs(rows * groups) : [],
                rows, cols, groupSize, perSuper);
    }

    /// <summary>The GGUF types <c>--format</c> takes that load as <see cref="SuperBlockInt4Matrix"/>.</summary>
    private static readonly string[] SuperBlockTypes = ["Q4_1", "Q4_K", "Q3_K", "Q2_K", "IQ4_NL", "IQ4_XS"];

    /// <summary>The GGUF types <c>--format</c> takes that load as <see cref="GroupedInt8Matrix"/>.</summary>
    private static readonly string[] GroupedInt8Types = ["Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0"];

    internal static IWeightMatrix Make(string format, int rows, int cols, Random random)
    {
        if (format == "Q4_0") return GgufQ4_0(rows, cols, random);
        if (SuperBlockTypes.Contains(format)) return SuperBlocks(Enum.Parse<GgmlType>(format), rows, cols, random);
        long count = (long)rows * cols;
        if (count > int.MaxValue / 2) throw new AgileQuantException($"Shape {rows}x{cols} is too large for this benchmark.");
        int groups = (cols + 31) / 32;
        float[] scales = Enumerable.Range(0, rows * (format == "W8A8" ? 1 : groups)).Select(_ => 0.01f + (float)random.NextDouble() * 0.01f).ToArray();
        switch (format)
        {
            case "FP32":
                return new Fp32Matrix(Enumerable.Range(0, (int)count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray(), rows, cols);
            case "Q8_0" or "Q6_K" or "Q5_K" or "Q5_1" or "Q5_0":
                return GroupedWeights(format, rows, cols, random);
            case "W8A8":
                var codes8 = new sbyte[count];
                for (long i = 0; i < count; i++) codes8[i] = (sbyte)random.Next(-127, 128);
                return new Int8RowMatrix(codes8, scales, rows, cols);
            default:
                var codes4 = new byte[count];
                random.NextBytes(codes4);
                for (long i = 0; i < count; i++) codes4[i] &= 0x0F;
                var zeros = new byte[rows * groups];
                for (int i = 0; i < zeros.Length; i++) zeros[i] = (byte)random.Next(0, 16);
                return PackedInt4Matrix.FromAsymmetricCodes(codes4, scales, zeros, rows, cols, 32);
        }
    }
}
