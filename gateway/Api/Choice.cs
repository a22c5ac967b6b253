using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Gateway.Serving;

namespace MoeMesh.Gateway.Api;

/// <summary>One choice's accumulated result, built from its generation events.</summary>
public sealed class Choice(int index, GenerationHandle handle)
{
    public int Index { get; } = index;
    public GenerationHandle Handle { get; } = handle;
    public System.Text.StringBuilder Text { get; } = new();
    public List<TokenLogprob> Logprobs { get; } = [];
    public int CompletionTokens { get; private set; }
    public FinishReason? Finish { get; private set; }
    public string? Error { get; private set; }

    public void Add(GenerationEvent e)
    {
        Text.Append(e.TextDelta);
        if (e.TokenId is not null) CompletionTokens++;
        if (e.Logprob is not null) Logprobs.Add(e.Logprob);
        if (e.Finish is not null)
        {
            Finish = e.Finish;
            Error = e.Error;
        }
    }

    public static string? ReasonText(FinishReason? reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        FinishReason.Abort => "abort",
        FinishReason.Error or FinishReason.Unavailable => "error",
        _ => null,
    };
}
