using MoeMesh.Cli;
using MoeMesh.Operator.Reconcile;

namespace MoeMesh.Operator.Hosting;

/// <summary>The operator's settings; each is a command-line option and a MOEMESH_ variable (see <see cref="CommandLine"/>).</summary>
public sealed record OperatorOptions(
    string? Kubeconfig, string? Namespace, string Urls, TimeSpan Resync, bool LeaderElection, string LeaseNamespace, string LeaseName,
    TimeSpan LeaseDuration, string Identity, TimeSpan RetryBase, TimeSpan ScalingInterval, Uri? Prometheus, TimeSpan PrometheusWindow)
{
    public const string DefaultUrl = "http://0.0.0.0:8081";

    public ControllerSettings Controller => new(Namespace, Resync, RetryBase, TimeSpan.FromMinutes(5));

    /// <summary>Reads the options; null when --help was asked for. Throws <see cref="CommandLineException"/>.</summary>
    public static OperatorOptions? Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        var (cli, read) = Declare();
        var parsed = cli.Parse(args, environment);
        return parsed.HelpRequested ? null : read(parsed);
    }

    public static string Usage() => Declare().Cli.Usage();

    private static (CommandLine Cli, Func<ParsedCommandLine, OperatorOptions> Read) Declare()
    {
        Func<string, string?> env = Environment.GetEnvironmentVariable;
        var cli = new CommandLine("moemesh-operator",
            "Reconciles MoeDeployment resources (moemesh.dev/v1alpha1) into gateways, expert nodes and their placement. "
            + "'moemesh-operator crd' prints the CRD, 'moemesh-operator crd-reference' its field reference. Endpoints: /healthz, /readyz, /metrics.");
        var kubeconfig = cli.Add<string?>("--kubeconfig", "FILE", "Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, then the pod's service account)", Values.OptionalText, null);
        var ns = cli.Add<string?>("--namespace", "NS", "Watch MoeDeployments in this namespace only (default: all namespaces)", Values.OptionalText, null);
        var urls = cli.Add("--urls", "URL", $"Listen address of /healthz, /readyz and /metrics (default {DefaultUrl}); meant for the cluster network: nothing there changes state", Values.Text, DefaultUrl);
        var resync = cli.Add("--resync-seconds", "N", "Every watch restarts from the current state this often, reconciling everything again (default 300)", Values.PositiveInt, 300);
        var election = cli.Add("--leader-election", "on|off", "Act only while holding the leader Lease, so that replicas never both act (default on)", Values.OnOff, true);
        var leaseNs = cli.Add<string?>("--leader-election-namespace", "NS", "Namespace of the Lease (default: $POD_NAMESPACE, else default)", Values.OptionalText, null);
        var leaseName = cli.Add("--leader-election-name", "NAME", "Name of the Lease (default moemesh-operator)", Values.Text, "moemesh-operator");
        var lease = cli.Add("--lease-seconds", "N", "Lease duration: how long a dead leader blocks a new one (default 15; renewals every third of it)", Values.PositiveInt, 15);
        var identity = cli.Add<string?>("--identity", "TEXT", "This replica's name in the Lease (default: $POD_NAME, else host name and process id)", Values.OptionalText, null);
        var sampling = cli.Add("--scaling-interval-ms", "N", "How often the load of autoscaled tiers is sampled from their pods' /metrics (default 2000)", Values.PositiveInt, 2000);
        var prometheus = cli.Add<Uri?>("--prometheus-url", "URL", "Read the autoscaled tiers' load from this Prometheus (its query API; series labelled namespace, service and pod, as a ServiceMonitor scrapes them) instead of the pods' own /metrics. Placement roll-outs still read the pods", Values.OptionalHttpUrl, null);
        var window = cli.Add("--prometheus-window-seconds", "N", "Window of the rates and means taken in Prometheus (default 60; at least a few scrape intervals)", Values.PositiveInt, 60);
        var retry = cli.Add("--retry-base-ms", "N", "First retry delay of a failed reconcile; it doubles on each failure up to 5 minutes (default 500)", Values.PositiveInt, 500);
        return (cli, p => new OperatorOptions(
            p.Get(kubeconfig), p.Get(ns), p.Get(urls), TimeSpan.FromSeconds(p.Get(resync)), p.Get(election),
            p.Get(leaseNs) ?? env("POD_NAMESPACE") ?? "default", p.Get(leaseName), TimeSpan.FromSeconds(p.Get(lease)),
            p.Get(identity) ?? env("POD_NAME") ?? $"{Environment.MachineName}-{Environment.ProcessId}", TimeSpan.FromMilliseconds(p.Get(retry)),
            TimeSpan.FromMilliseconds(p.Get(sampling)), p.Get(prometheus), TimeSpan.FromSeconds(p.Get(window))));
    }
}
