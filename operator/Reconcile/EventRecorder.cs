using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Reconcile;

/// <summary>Records decisions as core/v1 Events on the MoeDeployment (what kubectl describe shows). Never fails a reconcile.</summary>
public sealed class EventRecorder(IKubernetes client, string identity, ILogger<EventRecorder> logger)
{
    public const string Normal = "Normal";
    public const string Warning = "Warning";

    public async Task RecordAsync(MoeDeployment md, string type, string reason, string message, CancellationToken ct)
    {
        var now = DateTime.UtcNow;
        var ns = md.Metadata.NamespaceProperty ?? "default";
        var e = new Corev1Event
        {
            ApiVersion = "v1",
            Kind = "Event",
            Metadata = new V1ObjectMeta { Name = $"{md.Metadata.Name}.{Guid.NewGuid():N}"[..Math.Min(md.Metadata.Name.Length + 17, 253)], NamespaceProperty = ns },
            InvolvedObject = new V1ObjectReference
            {
                ApiVersion = md.ApiVersion,
                Kind = md.Kind,
                Name = md.Metadata.Name,
                NamespaceProperty = ns,
                Uid = md.Metadata.Uid,
                ResourceVersion = md.Metadata.ResourceVersion,
            },
            Type = type,
            Reason = reason,
            Message = message.Length > 1024 ? message[..1024] : message,
            Source = new V1EventSource { Component = Names.FieldManager },
            ReportingComponent = Names.FieldManager,
            ReportingInstance = identity,
            FirstTimestamp = now,
            LastTimestamp = now,
            Count = 1,
        };
        logger.LogInformation("{Namespace}/{Name}: {Reason}: {Message}", ns, md.Metadata.Name, reason, message);
        try
        {
            await client.CoreV1.CreateNamespacedEventAsync(e, ns, cancellationToken: ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            logger.LogWarning("Could not record event {Reason} on {Namespace}/{Name}: {Error}", reason, ns, md.Metadata.Name, ex.Message);
        }
    }
}
