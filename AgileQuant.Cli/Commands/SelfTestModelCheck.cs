using AgileQuant.Core.Runtime;
using AgileQuant.Intrinsics;
using AgileQuant.Models.Llama2c;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// The model-level part of <c>agilequant selftest</c>: the bundled stories260K through this CPU's default kernels (FP32
/// weights), its prompt positions one token at a time, against llama2.c's own FP32 forward pass.
/// </summary>
/// <remarks>
/// The reference values are llama2.c's, copied from the project's golden file
/// (<c>assets/golden/stories260K_once_upon_a_time.json</c> of the shared reference assets, prompt "Once upon a time"),
/// not produced by this library; a test checks them against that file. The tolerance is the golden test's
/// (<c>Stories260KGoldenTests</c>): 1e-4 on each logit.
/// </remarks>
internal static class SelfTestModelCheck
{
    /// <summary>Largest |logit − llama2.c's| allowed, as in the golden test.</summary>
    public const double Tolerance = 1e-4;

    /// <summary>Per prompt position: the input token, llama2.c's argmax, its largest logit and its first 8 logits.</summary>
    internal static readonly (int Input, int ArgMax, double MaxLogit, double[] First8)[] Reference =
    [
        (1, 403, 17.023516, [-6.222911, 8.404342, -6.223737, -6.222542, -6.221951, -6.222875, -6.221880, -6.223416]),
        (403, 407, 18.459986, [-9.589458, 3.841276, -9.590532, -9.589193, -9.588642, -9.590147, -9.588483, -9.590077]),
        (407, 261, 17.136963, [-12.141099, 1.776247, -12.142951, -12.141023, -12.140549, -12.142582, -12.139871, -12.141809]),
        (261, 378, 18.874399, [-6.714241, -6.053024, -6.715025, -6.714480, -6.714418, -6.714837, -6.715006, -6.714128]),
        (378, 432, 17.799398, [-10.136575, -5.329466, -10.138081, -10.136852, -10.137212, -10.138329, -10.137267, -10.137636]),
    ];

    /// <summary>
    /// Runs the forward pass from <paramref name="modelPath"/> through <paramref name="kernel"/> and returns whether every
    /// logit checked is within <see cref="Tolerance"/> (NaN never is) with llama2.c's argmax, and the largest difference.
    /// </summary>
    public static (bool Passed, double MaxError, string Detail) Run(string modelPath, IMatMulKernel kernel)
    {
        InferenceContext context = new TransformerModel(Llama2cCheckpoint.Load(modelPath), kernel).CreateContext();
        double maxError = 0;
        bool passed = true;
        string detail = "";
        for (int p = 0; p < Reference.Length; p++)
        {
            (int input, int argMax, double maxLogit, double[] first8) = Reference[p];
            float[] logits = context.Forward([input]);
            int best = 0;
            for (int i = 0; i < logits.Length; i++)
            {
                if (float.IsNaN(logits[i])) { passed = false; detail = $"logit {i} at position {p} is NaN"; }
                if (logits[i] > logits[best]) best = i;
            }
            if (best != argMax) { passed = false; detail = $"argmax {best} at position {p}, llama2.c {argMax}"; }
            for (int i = 0; i <= first8.Length; i++)
            {
                (double actual, double expected) = i < first8.Length ? (logits[i], first8[i]) : (logits[best], maxLogit);
                double error = Math.Abs(actual - expected);
                if (!(error <= Tolerance)) { passed = false; detail = $"logit {(i < first8.Length ? i : best)} at position {p} is {actual}, llama2.c {expected}"; }
                if (!(error <= maxError)) maxError = error;
            }
        }
        return (passed, maxError, detail);
    }
}
