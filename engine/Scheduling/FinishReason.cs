namespace MoeMesh.Engine.Scheduling;

/// <summary>Why a sequence ended, in OpenAI's words.</summary>
public enum FinishReason
{
    /// <summary>End-of-sequence token, stop token or stop string.</summary>
    Stop,
    /// <summary>max_tokens reached.</summary>
    Length,
    /// <summary>The client went away or the request was cancelled.</summary>
    Abort,
    /// <summary>The engine could not serve it (see the sequence's error).</summary>
    Error,
    /// <summary>A dependency it needs is down (no expert node holds an expert it chose); retrying later may work.</summary>
    Unavailable,
}
