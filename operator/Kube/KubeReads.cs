using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using MoeMesh.Operator.Desired;

namespace MoeMesh.Operator.Kube;

/// <summary>Reads where a missing object is an answer, not a failure.</summary>
public static class KubeReads
{
    /// <summary>The object read; null when the API server answers 404. Any other failure is thrown.</summary>
    public static async Task<T?> OrNullAsync<T>(Func<Task<T>> read) where T : class
    {
        try
        {
            return await read();
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>A deployment's placement ConfigMap; null when there is none.</summary>
    public static Task<V1ConfigMap?> PlacementAsync(IKubernetes client, Names n, CancellationToken ct) =>
        OrNullAsync(() => client.CoreV1.ReadNamespacedConfigMapAsync(n.Placement, n.Namespace, cancellationToken: ct));

    /// <summary>The placement generation a placement ConfigMap was written with (its annotation); 0 for none.</summary>
    public static long PlacementGeneration(V1ConfigMap? map) =>
        map?.Metadata.Annotations?.TryGetValue(Names.PlacementGenerationAnnotation, out var text) == true && long.TryParse(text, out var g) ? g : 0;
}
