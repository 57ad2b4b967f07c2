using System.CommandLine;
using System.Text;
using AgileQuant.Core.Generation;
using AgileQuant.Models;
using AgileQuant.Models.ChatClient;
using Microsoft.Extensions.AI;

namespace AgileQuant.Cli.Commands;

/// <summary>
/// <c>agilequant chat</c>: an interactive conversation in the terminal through the model's chat template
/// (<see cref="ChatTemplate.FromTemplateText"/> on the model's own, else <see cref="ChatTemplate.ForModel"/>; <c>--chat-template</c> names one): replies streamed as they are generated, the history kept within the context
/// (the oldest exchanges dropped when it is full), <c>/reset</c> and <c>/exit</c>, Ctrl+C stops the current reply only.
/// </summary>
/// <remarks>
/// Each reply is generated from the whole conversation as the template formats it (no KV cache is kept between turns),
/// so every turn costs a prefill of the history. Standard input may also be a pipe: one message per line.
/// </remarks>
internal static class ChatCommand
{
    /// <summary>The prompt shown before each message when standard input is a terminal.</summary>
    internal const string PromptMarker = "> ";

    public static Command Create()
    {
        var model = new ModelOptions();
        var system = new Option<string?>("--system") { Description = "System prompt: instructions the template puts before the conversation." };
        var sampling = new SamplingCliOptions("Most tokens per reply (default 256).");
        var template = new ChatTemplateOption("Format the conversation in this chat format instead of the model's own template.");
        var command = new Command("chat",
            "Chat with a model in the terminal, in the format of its own chat template (GGUF tokenizer.chat_template, Hugging Face chat_template: ChatML, Llama 3, Llama 2 [INST], Mistral, Phi-3, Gemma), "
            + "else Llama-2 [INST] for LLaMA models with the 32k SentencePiece vocabulary and plain User:/Assistant: lines otherwise; --chat-template picks a format by name. Replies end at every end token the model declares. "
            + "Type a message and Enter; /reset clears the history, /exit (or end of input) quits; Ctrl+C stops the reply being written (at the prompt it quits). "
            + "The history is kept within the context: the oldest exchanges are dropped when it is full. Samples with llama.cpp's defaults unless --temperature 0.");
        model.AddTo(command);
        command.Options.Add(system);
        template.AddTo(command);
        sampling.AddTo(command);
        command.SetAction(parse => CliErrors.Run(parse, cancel =>
        {
            GenerationOptions options = sampling.Read(parse);
            string? systemPrompt = parse.GetValue(system) is { } s ? Utf8Text.RequireValidArgument(s, "--system") : null;
            ChatTemplate? chatTemplate = template.Read(parse);
            model.Validate(parse);
            using LoadedModel loaded = model.Load(parse, cancel);
            ModelOptions.RequireTokenizer(loaded);
            using AgileQuantChatClient client = loaded.AsChatClient(new AgileQuantChatClientOptions
            {
                DefaultSampling = options.Sampling,
                DefaultMaxOutputTokens = options.MaxTokens,
                Template = chatTemplate,
            });
            return new ChatLoop(client, systemPrompt, options).Run();
        }));
        return command;
    }

    /// <summary>The conversation: reads messages, keeps the history, streams replies.</summary>
    private sealed class ChatLoop(AgileQuantChatClient client, string? systemPrompt, GenerationOptions options)
    {
        private readonly List<ChatMessage> _history = [];
        private readonly ChatOptions _perReply = new() { StopSequences = [.. options.StopSequences] };
        private readonly bool _interactive = !Console.IsInputRedirected;
        private CancellationTokenSource? _reply; // set while a reply is being written

        public int Run()
        {
            int context = client.Model.Config.MaxSequenceLength;
            Console.Error.WriteLine($"chat: template {client.Template.Name}, context {context} tokens. /reset clears the history, /exit quits; Ctrl+C stops a reply.");
            ConsoleCancelEventHandler onCancel = (_, e) =>
            {
                CancellationTokenSource? reply = Volatile.Read(ref _reply);
                // During a reply Ctrl+C stops that reply only; at the prompt it ends the program, as in llama-cli.
                e.Cancel = reply is not null;
                reply?.Cancel();
            };
            Console.CancelKeyPress += onCancel;
            try
            {
                while (true)
                {
                    if (_interactive) { Console.Out.Write(PromptMarker); Console.Out.Flush(); }
                    string? line = Console.In.ReadLine();
                    if (line is null) return ExitCodes.Success;
                    string message = line.Trim();
                    if (message.Length == 0) continue;
                    if (message is "/exit" or "/quit") return ExitCodes.Success;
                    if (message == "/reset")
                    {
                        _history.Clear();
                        Console.Error.WriteLine("(history cleared)");
                        continue;
                    }
                    if (message.StartsWith('/') && !message.StartsWith("//", StringComparison.Ordinal))
                    {
                        Console.Error.WriteLine($"unknown command {message.Split(' ')[0]}: /reset clears the history, /exit quits (start a message with // to send a leading /).");
                        continue;
                    }
                    if (message.StartsWith("//", StringComparison.Ordinal)) message = message[1..];
                    if (message.Contains('\uFFFD'))
                    {
                        Console.Error.WriteLine("agilequant: error: the message is not valid UTF-8 text; it was not sent.");
                        continue;
                    }
                    _history.Add(new ChatMessage(ChatRole.User, message));
                    if (!FitHistory(context)) continue;
                    _history.Add(new ChatMessage(ChatRole.Assistant, Reply()));
                }
            }
            finally
            {
                Console.CancelKeyPress -= onCancel;
            }
        }

        private List<ChatMessage> Conversation() => systemPrompt is null ? [.. _history] : [new ChatMessage(ChatRole.System, systemPrompt), .. _history];

        /// <summary>
        /// Drops the oldest exchanges until the conversation leaves room for a reply (min(--max-tokens, half the
        /// context)); false, with the new message removed, when that message alone does not fit.
        /// </summary>
        private bool FitHistory(int context)
        {
            int room = Math.Max(1, Math.Min(options.MaxTokens, context / 2));
            int dropped = 0;
            int tokens = client.EncodePrompt(Conversation()).Count;
            while (tokens + room > context && _history.Count > 1)
            {
                _history.RemoveAt(0);
                while (_history.Count > 1 && _history[0].Role != ChatRole.User) _history.RemoveAt(0);
                dropped++;
                tokens = client.EncodePrompt(Conversation()).Count;
            }
            if (dropped > 0) Console.Error.WriteLine($"(dropped the {dropped} oldest exchange{(dropped == 1 ? "" : "s")} to fit the context of {context} tokens)");
            if (tokens + room <= context) return true;
            _history.RemoveAt(_history.Count - 1);
            Console.Error.WriteLine($"agilequant: error: the message makes a prompt of {tokens} tokens, which leaves no room for a reply of {room} in the context of {context}; it was not sent.");
            return false;
        }

        /// <summary>Streams one reply to stdout; returns its text (what was written before Ctrl+C, when stopped).</summary>
        private string Reply()
        {
            var text = new StringBuilder();
            using var reply = new CancellationTokenSource();
            Volatile.Write(ref _reply, reply);
            try
            {
                IAsyncEnumerator<ChatResponseUpdate> stream = client.GetStreamingResponseAsync(Conversation(), _perReply, reply.Token).GetAsyncEnumerator(reply.Token);
                try
                {
                    while (stream.MoveNextAsync().AsTask().GetAwaiter().GetResult())
                    {
                        string piece = stream.Current.Text;
                        if (piece.Length == 0) continue;
                        // The template's reply starts after "Assistant:" or "[/INST]": drop the leading space of the first piece.
                        if (text.Length == 0) piece = piece.TrimStart();
                        text.Append(piece);
                        Console.Out.Write(piece);
                        Console.Out.Flush();
                    }
                }
                finally
                {
                    stream.DisposeAsync().AsTask().GetAwaiter().GetResult();
                }
                Console.Out.WriteLine();
            }
            catch (OperationCanceledException)
            {
                Console.Out.WriteLine(" [stopped]");
            }
            finally
            {
                Volatile.Write(ref _reply, null);
            }
            return text.ToString();
        }
    }
}
