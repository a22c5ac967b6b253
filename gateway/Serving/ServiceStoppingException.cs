namespace MoeMesh.Gateway.Serving;

/// <summary>The server is shutting down (or its engine failed) and takes no new requests.</summary>
public sealed class ServiceStoppingException(string message) : Exception(message);
