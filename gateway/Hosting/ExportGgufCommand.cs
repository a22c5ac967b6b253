using MoeMesh.Cli;
using MoeMesh.Engine.Export;

namespace MoeMesh.Gateway.Hosting;

/// <summary>
/// <c>moemesh-gateway export-gguf --model DIR --output FILE [--type f32|f16|bf16]</c>: writes a Hugging Face
/// DeepSeek-V2/V3 checkpoint folder as one GGUF file for llama.cpp's deepseek2 architecture (llama.cpp, Ollama).
/// </summary>
public static class ExportGgufCommand
{
    public const string Name = "export-gguf";

    public static int Run(IReadOnlyList<string> args)
    {
        var cli = new CommandLine($"moemesh-gateway {Name}", "Writes a Hugging Face DeepSeek-V2/V3 checkpoint folder as a GGUF file for llama.cpp's deepseek2 architecture.");
        var model = cli.Add("--model", "DIR", "Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json)", Values.OptionalText, null);
        var output = cli.Add("--output", "FILE", "GGUF file to write", Values.OptionalText, null);
        var type = cli.Add("--type", "f32|f16|bf16", "Type of the weights in the file (default bf16; norms, biases and the router are always f32)", GgufExporter.ParseType, GgufType.BF16);
        try
        {
            var parsed = cli.Parse(args);
            if (parsed.HelpRequested)
            {
                Console.WriteLine(cli.Usage());
                return 0;
            }
            var dir = parsed.Get(model) ?? throw cli.Error("--model is required");
            var file = parsed.Get(output) ?? throw cli.Error("--output is required");
            GgufExporter.Export(dir, file, parsed.Get(type), Console.Error);
            Console.WriteLine($"wrote {file} ({new FileInfo(file).Length} bytes)");
            return 0;
        }
        catch (CommandLineException e)
        {
            return e.Report();
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException or ArgumentException
                                      or Engine.Config.ModelConfigException or Engine.Checkpoint.CheckpointException)
        {
            Console.Error.WriteLine($"moemesh-gateway {Name}: {e.Message}");
            return 2;
        }
    }
}
