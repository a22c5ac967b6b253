using System.Net;
using System.Text.Json;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Kube;
using MoeMesh.Operator.Resources;
using MoeMesh.Operator.Scaling;

namespace MoeMesh.Operator.Reconcile;

/// <summary>
/// One reconcile of one MoeDeployment: apply the desired children (server-side apply, field manager
/// moemesh-operator, forced), delete what it manages but no longer wants, observe readiness and write the status
/// (retried on conflicts). Throws on failures so that the controller retries with backoff.
/// </summary>
public sealed class Reconciler(IKubernetes client, EventRecorder events, OperatorMetrics metrics, ScalingState scaling, PodScraper pods, ILogger<Reconciler> logger)
{
    private const int StatusAttempts = 5;

    public async Task ReconcileAsync(string ns, string name, CancellationToken ct)
    {
        var md = await GetAsync(ns, name, ct);
        // Gone: the API server's garbage collector removes the children through their owner references.
        if (md is null || md.Metadata.DeletionTimestamp is not null)
        {
            scaling.Forget(ns, name);
            return;
        }
        if (md.Metadata.Name.Length > Names.MaxNameLength)
        {
            var message = $"the name is longer than {Names.MaxNameLength} characters; the children's names would not fit. Deploy it under a shorter name";
            await WriteStatusAsync(md, m => StatusBuilder.Invalid(m, message, DateTime.UtcNow), ct);
            return;
        }
        var n = Names.Of(md);
        scaling.Track(md);
        var placement = await KubeReads.PlacementAsync(client, n, ct);
        int? live = null;
        if (TierCounts.HasExpertTier(md.Spec) && scaling.NodesInForce(md) is null)
            live = await LiveExpertNodesAsync(n, ct);
        var counts = scaling.Applied(md, live);
        // The planner's new placement; else the operator's own documents in force (kept across restarts and leaders,
        // new nodes added empty); else (none yet, or edited by hand) the uniform one.
        var plan = scaling.Placement(md, counts.ExpertNodes) ?? Kept(placement, n, counts.ExpertNodes)
            ?? PlacementPlan.Uniform(counts.ExpertNodes, md.Spec.Experts?.MinReplicasPerExpert ?? 1);
        var generation = PlacementGeneration(placement, n, md, plan);
        var desired = DesiredState.Children(md, counts, plan, generation.Value);

        // Every child is tried, and every unwanted one deleted, even after a refusal: one bad child does not freeze the rest.
        var problems = new List<string>();
        V1Deployment? gateway = null;
        V1StatefulSet? experts = null;
        var existing = await ManagedChildrenAsync(n, md, ct);
        var specChanged = md.Metadata.Generation != md.Status?.ObservedGeneration;
        var scaled = !specChanged && md.Status is not null
            && (counts.Gateways != md.Status.Gateway?.Desired || (TierCounts.HasExpertTier(md.Spec) && counts.ExpertNodes != md.Status.Experts?.Desired));
        foreach (var child in desired)
        {
            var kind = ChildKind.Of(child);
            IKubernetesObject<V1ObjectMeta> applied;
            try
            {
                applied = await kind.Apply(client, child, ct);
            }
            catch (HttpOperationException e)
            {
                problems.Add($"the API server refused {kind.Kind} {child.Name()} ({(int)e.Response.StatusCode}): {Message(e)}");
                continue;
            }
            metrics.Applies.WithLabels(kind.Kind).Inc();
            existing.Remove((kind.Kind, child.Name()), out var before);
            if (before is null)
                await events.RecordAsync(md, EventRecorder.Normal, specChanged || md.Status is null ? "Created" : "Restored",
                    specChanged || md.Status is null ? $"created {kind.Kind} {child.Name()}" : $"recreated {kind.Kind} {child.Name()}, deleted outside the operator", ct);
            // A new placement is its own event (PlacementChanged), not a restore.
            else if (Changed(before, applied.Metadata) && !(applied is V1ConfigMap && generation.Changed))
                await events.RecordAsync(md, EventRecorder.Normal, specChanged ? "Updated" : scaled ? "Scaled" : "Restored",
                    specChanged ? $"applied spec generation {md.Metadata.Generation} to {kind.Kind} {child.Name()}"
                    : scaled ? $"applied the autoscaler's counts ({counts.Gateways} gateways, {counts.ExpertNodes} expert nodes) to {kind.Kind} {child.Name()}"
                    : $"restored {kind.Kind} {child.Name()}, changed outside the operator", ct);
            if (applied is V1ConfigMap && generation.Changed)
                await events.RecordAsync(md, EventRecorder.Normal, "PlacementChanged",
                    $"placement generation {generation.Value}: {counts.ExpertNodes} expert nodes, {Math.Min(md.Spec.Experts?.MinReplicasPerExpert ?? 1, Math.Max(counts.ExpertNodes, 1))} holder(s) per expert", ct);
            gateway ??= applied as V1Deployment;
            experts ??= applied as V1StatefulSet;
        }
        foreach (var ((kindName, childName), _) in existing)
        {
            try
            {
                await ChildKind.All.First(k => k.Kind == kindName).Delete(client, ns, childName, ct);
                await events.RecordAsync(md, EventRecorder.Normal, "Deleted", $"deleted {kindName} {childName}: the spec no longer needs it", ct);
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
            {
                // Gone already: what was wanted.
            }
            catch (HttpOperationException e)
            {
                problems.Add($"the API server refused to delete {kindName} {childName} ({(int)e.Response.StatusCode}): {Message(e)}");
            }
        }
        // Readiness from what is there, also when this round could not apply the tier's workload.
        gateway ??= await ReadOrNullAsync(() => client.AppsV1.ReadNamespacedDeploymentAsync(n.Gateway, ns, cancellationToken: ct));
        if (TierCounts.HasExpertTier(md.Spec)) experts ??= await ReadOrNullAsync(() => client.AppsV1.ReadNamespacedStatefulSetAsync(n.Experts, ns, cancellationToken: ct));
        var problem = problems.Count == 0 ? null : string.Join("; ", problems);
        var ready = TierCounts.HasExpertTier(md.Spec) ? await ReadyExpertOrdinalsAsync(n, ct) : [];
        var seen = new Observed(gateway?.Status?.ReadyReplicas ?? 0, experts?.Status?.ReadyReplicas ?? 0, ready, problem);
        var after = await WriteStatusAsync(md, m => StatusBuilder.Build(m, counts, plan, generation.Value, seen, DateTime.UtcNow, scaling.Decisions(m)), ct);
        if (after is not null) await RecordTransitionsAsync(md, after, ct);
        if (problem is not null) throw new ReconcileException(problem);
    }

    /// <summary>
    /// Whether an apply changed the child: its generation for kinds that have one (so that status written by
    /// Kubernetes' own controllers in between does not count), else its resource version.
    /// </summary>
    private static bool Changed(V1ObjectMeta before, V1ObjectMeta after) =>
        before.Generation is { } g && after.Generation is { } h ? g != h : before.ResourceVersion != after.ResourceVersion;

    private static async Task<T?> ReadOrNullAsync<T>(Func<Task<T>> read) where T : class
    {
        try
        {
            return await read();
        }
        catch (HttpOperationException)
        {
            return null;
        }
    }

    /// <summary>
    /// The expert StatefulSet's replicas; null when there is none. Any other failure fails the reconcile (retried):
    /// guessing would risk shrinking nodes that were never drained.
    /// </summary>
    private async Task<int?> LiveExpertNodesAsync(Names n, CancellationToken ct) =>
        (await KubeReads.OrNullAsync(() => client.AppsV1.ReadNamespacedStatefulSetAsync(n.Experts, n.Namespace, cancellationToken: ct)))?.Spec?.Replicas;

    private Task<MoeDeployment?> GetAsync(string ns, string name, CancellationToken ct) =>
        KubeReads.OrNullAsync(() => client.CustomObjects.GetNamespacedCustomObjectAsync<MoeDeployment>(MoeDeployment.Group, MoeDeployment.Version, ns, MoeDeployment.Plural, name, ct));

    /// <summary>
    /// The generation of the placement: the ConfigMap's, one more when the plan differs from what it holds. Never
    /// below the one in the status, so that it only grows even if the ConfigMap was deleted or the tier removed.
    /// </summary>
    private static (long Value, bool Changed) PlacementGeneration(V1ConfigMap? current, Names n, MoeDeployment md, PlacementPlan plan)
    {
        var written = KubeReads.PlacementGeneration(current);
        var generation = Math.Max(written, md.Status?.PlacementGeneration ?? 0);
        var same = written == generation && generation > 0 && current!.Data is { } data && data.Count == plan.Nodes.Count
            && Enumerable.Range(0, plan.Nodes.Count).All(i => data.TryGetValue(Names.PlacementKey(n.ExpertPod(i)), out var doc) && doc == plan.Document(i, generation));
        return same ? (generation, false) : (generation + 1, true);
    }

    /// <summary>
    /// The plan in the ConfigMap when it is the operator's own (its digest matches), resized to
    /// <paramref name="nodes"/>: nodes it lacks are added holding nothing (make before break: nothing moves off the
    /// nodes that serve; the placement rounds fill them), and nodes beyond the count are dropped only when they
    /// hold nothing. Null otherwise.
    /// </summary>
    private static PlacementPlan? Kept(V1ConfigMap? map, Names n, int nodes)
    {
        if (map?.Data is not { } data || map.Metadata.Annotations?.TryGetValue(Names.PlacementDigestAnnotation, out var digest) != true
            || digest != PlacementPlan.Digest(data) || PlacementPlan.FromDocuments(data, data.Count, n.ExpertPod) is not { } kept)
            return null;
        return kept.Resized(nodes);
    }

    /// <summary>What this deployment's managed children are now, by kind and name, with their resource versions.</summary>
    private async Task<Dictionary<(string Kind, string Name), V1ObjectMeta>> ManagedChildrenAsync(Names n, MoeDeployment md, CancellationToken ct)
    {
        var selector = $"{Names.ManagedSelector},{Names.DeploymentLabel}={n.Instance}";
        var found = new Dictionary<(string, string), V1ObjectMeta>();
        foreach (var kind in ChildKind.All)
            foreach (var meta in await kind.List(client, n.Namespace, selector, ct))
                // Only what this very resource owns: a namesake created before it was deleted and recreated is the GC's.
                if (meta.OwnerReferences?.Any(o => o.Uid == md.Metadata.Uid) == true)
                    found[(kind.Kind, meta.Name)] = meta;
        return found;
    }

    /// <summary>The StatefulSet ordinals of the expert nodes the expert Service's EndpointSlices list as ready.</summary>
    private async Task<IReadOnlyList<int>> ReadyExpertOrdinalsAsync(Names n, CancellationToken ct) =>
        (await pods.ReadyEndpointsAsync(n.Namespace, n.Experts, ct))
            .Select(x => n.ExpertOrdinal(x.Endpoint.TargetRef?.Name ?? x.Endpoint.Hostname))
            .OfType<int>()
            .Distinct()
            .Order()
            .ToArray();

    /// <summary>
    /// Writes the status through the status subresource when it changed; re-reads and retries on a 409 conflict.
    /// Null when the spec changed meanwhile (nothing written: the next reconcile describes the new generation).
    /// </summary>
    private async Task<MoeDeploymentStatus?> WriteStatusAsync(MoeDeployment md, Func<MoeDeployment, MoeDeploymentStatus> build, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            var status = build(md);
            if (Same(status, md.Status)) return status;
            var update = new MoeDeployment { Metadata = md.Metadata, Spec = md.Spec, Status = status };
            try
            {
                await client.CustomObjects.ReplaceNamespacedCustomObjectStatusAsync<MoeDeployment>(update, MoeDeployment.Group, MoeDeployment.Version,
                    md.Metadata.NamespaceProperty, MoeDeployment.Plural, md.Metadata.Name, cancellationToken: ct);
                return status;
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict && attempt < StatusAttempts)
            {
                metrics.Conflicts.Inc();
                logger.LogDebug("Status of {Namespace}/{Name} changed meanwhile; retrying on the new version", md.Metadata.NamespaceProperty, md.Metadata.Name);
                var newer = await GetAsync(md.Metadata.NamespaceProperty ?? "default", md.Metadata.Name, ct) ?? throw new ReconcileException("the MoeDeployment was deleted while its status was written");
                // The spec changed meanwhile: this round's status describes the older one; the change's own reconcile writes it.
                if (newer.Metadata.Generation != md.Metadata.Generation) return null;
                md = newer;
            }
        }
    }

    /// <summary>Events for Ready and Degraded changing: what a user watching `kubectl describe` wants to see.</summary>
    private async Task RecordTransitionsAsync(MoeDeployment md, MoeDeploymentStatus after, CancellationToken ct)
    {
        foreach (var (type, bad) in new[] { (StatusBuilder.Ready, "False"), (StatusBuilder.Degraded, "True") })
        {
            var now = StatusBuilder.Find(after, type);
            var was = StatusBuilder.Find(md.Status, type);
            if (now is null || (was is not null && was.Status == now.Status && was.Reason == now.Reason)) continue;
            await events.RecordAsync(md, now.Status == bad ? EventRecorder.Warning : EventRecorder.Normal, now.Reason, $"{type}={now.Status}: {now.Message}", ct);
        }
    }

    private static bool Same(MoeDeploymentStatus a, MoeDeploymentStatus? b) =>
        b is not null && JsonSerializer.Serialize(a, KubernetesJsonOptions) == JsonSerializer.Serialize(b, KubernetesJsonOptions);

    private static readonly JsonSerializerOptions KubernetesJsonOptions = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    private static string Message(HttpOperationException e)
    {
        try
        {
            return JsonSerializer.Deserialize<V1Status>(e.Response.Content)?.Message ?? e.Message;
        }
        catch (JsonException)
        {
            return e.Message;
        }
    }
}

/// <summary>A reconcile that must be retried: the message says why.</summary>
public sealed class ReconcileException(string message) : Exception(message);
