namespace MoeMesh.Engine.Config;

/// <summary>A config.json value the engine cannot honour; the message names the key.</summary>
public sealed class ModelConfigException(string message) : Exception(message);
