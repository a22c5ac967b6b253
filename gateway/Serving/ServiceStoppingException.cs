namespace MoeMesh.Gateway.Serving;

/// <summary>The server is shutting down and takes no new requests.</summary>
public sealed class ServiceStoppingException() : Exception("the server is shutting down");
