using System.Diagnostics;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Desired;
using MoeMesh.Operator.Kube;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Reconcile;

/// <summary>
/// Watches MoeDeployments, their children and the expert Services' EndpointSlices, and reconciles the owning
/// MoeDeployment of whatever changed, one at a time. Every watch starts with the current state (so a restarted
/// watch is a resync), ends after the resync period and is started again; a reconcile that fails goes back
/// with exponential backoff.
/// </summary>
public sealed class Controller(IKubernetes client, Reconciler reconciler, Scaling.ScalingLoop scaling, Scaling.PlacementLoop placement,
    OperatorMetrics metrics, ControllerSettings settings, ILogger<Controller> logger)
{
    private readonly WorkQueue<(string Namespace, string Name)> _queue = new(settings.RetryBase, settings.RetryMax);
    private int _synced;

    /// <summary>Whether the MoeDeployments have been listed once (and queued).</summary>
    public bool Synced => Volatile.Read(ref _synced) == 1;

    public async Task RunAsync(CancellationToken ct)
    {
        var loops = new List<Task>
        {
            WatchLoopAsync("moedeployments", MoeDeployments, ct),
            WatchLoopAsync("endpointslices", EndpointSlices, ct),
        };
        loops.AddRange(ChildKind.All.Select(k => WatchLoopAsync(k.Plural, (c, t) => k.Watch(c, settings.Namespace, Names.ManagedSelector, t), ct)));
        loops.Add(WorkAsync(ct));
        loops.Add(ScaleAsync(ct));
        await Task.WhenAll(loops);
    }

    /// <summary>The autoscaler's sampling loop and the placement rounds; a decision that changes the children queues their deployment.</summary>
    private async Task ScaleAsync(CancellationToken ct)
    {
        try
        {
            await Task.WhenAll(scaling.RunAsync((ns, name) => _queue.Add((ns, name)), ct), placement.RunAsync((ns, name) => _queue.Add((ns, name)), ct));
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }

    private async Task WorkAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            (string Namespace, string Name) key;
            try
            {
                key = await _queue.TakeAsync(ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            metrics.QueueDepth.Set(_queue.Depth);
            var clock = Stopwatch.StartNew();
            try
            {
                await reconciler.ReconcileAsync(key.Namespace, key.Name, ct);
                _queue.Forget(key);
                metrics.Reconciles.WithLabels("ok").Inc();
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                metrics.Reconciles.WithLabels("error").Inc();
                var delay = _queue.AddRateLimited(key, ct);
                logger.LogWarning("Reconcile of {Namespace}/{Name} failed, retrying in {Delay:0.0} s: {Error}", key.Namespace, key.Name, delay.TotalSeconds, e.Message);
            }
            finally
            {
                metrics.ReconcileSeconds.Observe(clock.Elapsed.TotalSeconds);
                _queue.Done(key);
                metrics.QueueDepth.Set(_queue.Depth);
            }
        }
    }

    /// <summary>Runs a watch forever: restarted after it ends (the resync period) or fails (with backoff).</summary>
    private async Task WatchLoopAsync(string resource, Func<IKubernetes, CancellationToken, IAsyncEnumerable<(WatchEventType Type, V1ObjectMeta Meta)>> watch, CancellationToken ct)
    {
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            using var period = CancellationTokenSource.CreateLinkedTokenSource(ct);
            period.CancelAfter(settings.Resync);
            try
            {
                await foreach (var (type, meta) in watch(client, period.Token))
                {
                    failures = 0;
                    if (type == WatchEventType.Bookmark || meta is null) continue;
                    if (resource == "moedeployments") _queue.Add((meta.NamespaceProperty ?? "default", meta.Name));
                    else if (meta.Labels?.TryGetValue(Names.DeploymentLabel, out var owner) == true)
                        _queue.Add((meta.NamespaceProperty ?? "default", owner));
                    metrics.QueueDepth.Set(_queue.Depth);
                }
                // The server ended the watch: start the next one from the current state, after a breath.
                await Task.Delay(settings.RetryBase, ct);
            }
            catch (OperationCanceledException) when (period.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                // The resync period ended the watch; the next one starts from the current state.
            }
            catch (Exception e) when (!ct.IsCancellationRequested)
            {
                metrics.WatchRestarts.WithLabels(resource).Inc();
                var delay = TimeSpan.FromTicks(Math.Min(settings.RetryMax.Ticks, settings.RetryBase.Ticks << Math.Min(failures++, 20)));
                logger.LogWarning("Watch of {Resource} failed, restarting in {Delay:0.0} s: {Error}", resource, delay.TotalSeconds, e.Message);
                try
                {
                    await Task.Delay(delay, ct);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>
    /// Every MoeDeployment (as ADDED, from one list: once it is read the controller is synced, even with none),
    /// then the changes from the list's version.
    /// </summary>
    private async IAsyncEnumerable<(WatchEventType, V1ObjectMeta)> MoeDeployments(IKubernetes c, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        var list = settings.Namespace is { } ns
            ? await c.CustomObjects.ListNamespacedCustomObjectAsync<MoeDeploymentList>(MoeDeployment.Group, MoeDeployment.Version, ns, MoeDeployment.Plural, cancellationToken: ct)
            : await c.CustomObjects.ListClusterCustomObjectAsync<MoeDeploymentList>(MoeDeployment.Group, MoeDeployment.Version, MoeDeployment.Plural, cancellationToken: ct);
        foreach (var md in list.Items) yield return (WatchEventType.Added, md.Metadata);
        Interlocked.Exchange(ref _synced, 1);
#pragma warning disable CS0618 // WatchAsync on the response task is the typed watch of custom objects in this client
        var response = settings.Namespace is { } ns2
            ? c.CustomObjects.ListNamespacedCustomObjectWithHttpMessagesAsync<object>(MoeDeployment.Group, MoeDeployment.Version, ns2, MoeDeployment.Plural,
                resourceVersion: list.Metadata.ResourceVersion, watch: true, cancellationToken: ct)
            : c.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<object>(MoeDeployment.Group, MoeDeployment.Version, MoeDeployment.Plural,
                resourceVersion: list.Metadata.ResourceVersion, watch: true, cancellationToken: ct);
        await foreach (var (type, md) in response.WatchAsync<MoeDeployment, object>(cancellationToken: ct))
            yield return (type, md.Metadata);
#pragma warning restore CS0618
    }

    private async IAsyncEnumerable<(WatchEventType, V1ObjectMeta)> EndpointSlices(IKubernetes c, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        // The EndpointSlice controller copies the Service's labels onto its slices: these are the expert Services'.
        var events = settings.Namespace is { } ns
            ? c.DiscoveryV1.WatchListNamespacedEndpointSliceAsync(ns, labelSelector: Names.ManagedSelector, cancellationToken: ct)
            : c.DiscoveryV1.WatchListEndpointSliceForAllNamespacesAsync(labelSelector: Names.ManagedSelector, cancellationToken: ct);
        await foreach (var (type, slice) in events) yield return (type, slice.Metadata);
    }
}

/// <summary>How the controller watches and retries.</summary>
public sealed record ControllerSettings(string? Namespace, TimeSpan Resync, TimeSpan RetryBase, TimeSpan RetryMax);
