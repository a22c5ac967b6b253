using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MoeMesh.Operator.Reconcile;

namespace MoeMesh.Operator.Hosting;

/// <summary>
/// Runs the controller while this replica leads (a coordination.k8s.io Lease), so that two replicas never both
/// act. A replica that loses the lease stops acting and exits, as client-go's operators do, and comes back as a
/// stand-by; stand-bys take over when the leader's lease runs out.
/// </summary>
public sealed class LeaderService(IKubernetes client, Controller controller, OperatorMetrics metrics, OperatorOptions options,
    IHostApplicationLifetime lifetime, ILogger<LeaderService> logger) : BackgroundService
{
    private volatile bool _leaseSeen;

    /// <summary>Whether this replica can do its part: leading with its watches synced, or standing by behind a leader it has seen.</summary>
    public bool Ready => metrics.Leader.Value == 1 ? controller.Synced : _leaseSeen;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.LeaderElection)
        {
            metrics.Leader.Set(1);
            await RunControllerAsync(stoppingToken);
            return;
        }
        var config = new LeaderElectionConfig(new LeaseLock(client, options.LeaseNamespace, options.LeaseName, options.Identity))
        {
            LeaseDuration = options.LeaseDuration,
            RenewDeadline = options.LeaseDuration * 2 / 3,
            RetryPeriod = options.LeaseDuration / 5,
        };
        using var elector = new LeaderElector(config);
        using var leading = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        Task? running = null;
        elector.OnNewLeader += leader =>
        {
            _leaseSeen = true;
            logger.LogInformation("Leader is {Leader}", leader);
        };
        elector.OnStartedLeading += () =>
        {
            _leaseSeen = true;
            metrics.Leader.Set(1);
            logger.LogInformation("{Identity} leads: reconciling", options.Identity);
            running = RunControllerAsync(leading.Token);
        };
        elector.OnStoppedLeading += () =>
        {
            metrics.Leader.Set(0);
            leading.Cancel();
            if (stoppingToken.IsCancellationRequested) return;
            logger.LogError("{Identity} lost the lease: exiting so that it comes back as a stand-by", options.Identity);
            Environment.ExitCode = 1;
            lifetime.StopApplication();
        };
        elector.OnError += e => logger.LogWarning("Leader election: {Error}", e.Message);
        try
        {
            await elector.RunUntilLeadershipLostAsync(stoppingToken);
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        if (running is not null) await running;
    }

    private async Task RunControllerAsync(CancellationToken ct)
    {
        try
        {
            await controller.RunAsync(ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
    }
}
