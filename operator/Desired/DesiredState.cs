using k8s;
using k8s.Models;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Desired;

/// <summary>
/// The children a MoeDeployment should have, as pure functions of its spec, the replica counts and the
/// placement (the autoscaler's and the planner's outputs): no I/O, so that every field is tested directly.
/// The operator applies them with server-side apply; anything it manages but no longer wants is deleted.
/// </summary>
public static class DesiredState
{
    public const string DefaultGatewayImage = "moemesh/gateway:0.1.0";
    public const string DefaultExpertImage = "moemesh/expert-node:0.1.0";
    private const string ModelMount = "/model";
    private const string PlacementMount = "/etc/moemesh/placement";

    /// <summary>Every child, in the order they are applied (what a pod mounts or binds before the pod).</summary>
    public static IReadOnlyList<IKubernetesObject<V1ObjectMeta>> Children(MoeDeployment md, TierCounts counts, PlacementPlan placement, long placementGeneration)
    {
        var n = Names.Of(md);
        var experts = TierCounts.HasExpertTier(md.Spec);
        var children = new List<IKubernetesObject<V1ObjectMeta>> { GatewayAccount(md, n, experts) };
        if (experts)
        {
            children.Add(DiscoveryRole(md, n));
            children.Add(DiscoveryBinding(md, n));
            children.Add(PlacementConfigMap(md, n, placement, placementGeneration));
            children.Add(ExpertService(md, n));
            children.Add(ExpertStatefulSet(md, n, counts.ExpertNodes, placementGeneration));
            children.Add(Budget(md, n, n.Experts, Names.ExpertComponent, Math.Max((md.Spec.Experts?.MinReplicasPerExpert ?? 1) - 1, 1)));
        }
        children.Add(GatewayService(md, n));
        children.Add(GatewayDeployment(md, n, counts.Gateways, experts));
        children.Add(Budget(md, n, n.Gateway, Names.GatewayComponent, 1));
        return children;
    }

    private static V1ObjectMeta Meta(MoeDeployment md, Names n, string name, string? component = null, IDictionary<string, string>? annotations = null) => new()
    {
        Name = name,
        NamespaceProperty = n.Namespace,
        Labels = n.Labels(component),
        Annotations = annotations,
        OwnerReferences =
        [
            new V1OwnerReference
            {
                ApiVersion = md.ApiVersion,
                Kind = md.Kind,
                Name = md.Metadata.Name,
                Uid = md.Metadata.Uid,
                Controller = true,
                BlockOwnerDeletion = true,
            },
        ],
    };

    private static V1ServiceAccount GatewayAccount(MoeDeployment md, Names n, bool discovery) => new()
    {
        ApiVersion = "v1",
        Kind = "ServiceAccount",
        Metadata = Meta(md, n, n.GatewayAccount, Names.GatewayComponent),
        AutomountServiceAccountToken = discovery,
    };

    /// <summary>What the gateway's discovery reads: the expert Service's EndpointSlices, and nothing else.</summary>
    private static V1Role DiscoveryRole(MoeDeployment md, Names n) => new()
    {
        ApiVersion = "rbac.authorization.k8s.io/v1",
        Kind = "Role",
        Metadata = Meta(md, n, n.DiscoveryRole, Names.GatewayComponent),
        Rules = [new V1PolicyRule { ApiGroups = ["discovery.k8s.io"], Resources = ["endpointslices"], Verbs = ["get", "list", "watch"] }],
    };

    private static V1RoleBinding DiscoveryBinding(MoeDeployment md, Names n) => new()
    {
        ApiVersion = "rbac.authorization.k8s.io/v1",
        Kind = "RoleBinding",
        Metadata = Meta(md, n, n.DiscoveryRole, Names.GatewayComponent),
        RoleRef = new V1RoleRef { ApiGroup = "rbac.authorization.k8s.io", Kind = "Role", Name = n.DiscoveryRole },
        Subjects = [new Rbacv1Subject { Kind = "ServiceAccount", Name = n.GatewayAccount, NamespaceProperty = n.Namespace }],
    };

    private static V1ConfigMap PlacementConfigMap(MoeDeployment md, Names n, PlacementPlan placement, long generation)
    {
        var data = Enumerable.Range(0, placement.Nodes.Count).ToDictionary(i => Names.PlacementKey(n.ExpertPod(i)), i => placement.Document(i, generation));
        return new V1ConfigMap
        {
            ApiVersion = "v1",
            Kind = "ConfigMap",
            // The digest tells the operator's own documents (which it keeps) from a hand edit (which it replaces).
            Metadata = Meta(md, n, n.Placement, Names.ExpertComponent, new Dictionary<string, string>
            {
                [Names.PlacementGenerationAnnotation] = generation.ToString(),
                [Names.PlacementDigestAnnotation] = PlacementPlan.Digest(data),
            }),
            Data = data,
        };
    }

    private static V1Service GatewayService(MoeDeployment md, Names n) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = Meta(md, n, n.Gateway, Names.GatewayComponent),
        Spec = new V1ServiceSpec
        {
            Selector = n.Selector(Names.GatewayComponent),
            Ports = [new V1ServicePort { Name = "http", Port = Names.GatewayPort, TargetPort = "http", Protocol = "TCP" }],
        },
    };

    /// <summary>Headless: the gateways reach each node directly (its EndpointSlice address), never through a virtual IP.</summary>
    private static V1Service ExpertService(MoeDeployment md, Names n) => new()
    {
        ApiVersion = "v1",
        Kind = "Service",
        Metadata = Meta(md, n, n.Experts, Names.ExpertComponent),
        Spec = new V1ServiceSpec
        {
            ClusterIP = "None",
            Selector = n.Selector(Names.ExpertComponent),
            Ports = [new V1ServicePort { Name = "http", Port = Names.ExpertPort, TargetPort = "http", Protocol = "TCP" }],
        },
    };

    private static V1Deployment GatewayDeployment(MoeDeployment md, Names n, int replicas, bool discovery)
    {
        var s = md.Spec;
        List<string> args =
        [
            .. ModelArgs(s.Model),
            "--served-model-name", s.Model.ServedModelName ?? md.Metadata.Name,
            "--urls", $"http://0.0.0.0:{Names.GatewayPort}",
        ];
        if (discovery) args.AddRange(["--expert-discovery", n.Discovery]);
        var env = new List<V1EnvVar>();
        if (s.KvStore?.Redis is { } redis)
        {
            args.AddRange(["--kv-store", redis.Url, "--kv-store-prefix", redis.KeyPrefix ?? $"{n.Namespace}/{n.Instance}"]);
            if (redis.PasswordSecret is { } pw) env.Add(SecretEnv("MOEMESH_KV_STORE_PASSWORD", pw));
        }
        if (s.ApiKeySecret is { } key) env.Add(SecretEnv("MOEMESH_API_KEY", key));
        args.AddRange(s.Gateway?.ExtraArgs ?? []);
        var pod = Pod(md, n, Names.GatewayComponent, s.Images?.Gateway ?? DefaultGatewayImage, Names.GatewayPort, args, env, s.Gateway, [], []);
        pod.Spec.ServiceAccountName = n.GatewayAccount;
        return new V1Deployment
        {
            ApiVersion = "apps/v1",
            Kind = "Deployment",
            Metadata = Meta(md, n, n.Gateway, Names.GatewayComponent),
            Spec = new V1DeploymentSpec
            {
                Replicas = replicas,
                Selector = new V1LabelSelector { MatchLabels = n.Selector(Names.GatewayComponent) },
                // A new gateway loads the model before an old one goes: never below the serving count.
                Strategy = new V1DeploymentStrategy { Type = "RollingUpdate", RollingUpdate = new V1RollingUpdateDeployment { MaxSurge = "1", MaxUnavailable = "0" } },
                Template = pod,
            },
        };
    }

    private static V1StatefulSet ExpertStatefulSet(MoeDeployment md, Names n, int nodes, long placementGeneration)
    {
        var s = md.Spec;
        // $(POD_NAME) is expanded by the kubelet: each node reads its own entry of the placement ConfigMap.
        List<string> args =
        [
            .. ModelArgs(s.Model),
            "--placement", $"{PlacementMount}/$(POD_NAME).json",
            "--urls", $"http://0.0.0.0:{Names.ExpertPort}",
        ];
        args.AddRange(s.Experts?.ExtraArgs ?? []);
        var env = new List<V1EnvVar> { new() { Name = "POD_NAME", ValueFrom = new V1EnvVarSource { FieldRef = new V1ObjectFieldSelector { FieldPath = "metadata.name" } } } };
        var pod = Pod(md, n, Names.ExpertComponent, s.Images?.ExpertNode ?? DefaultExpertImage, Names.ExpertPort, args, env, s.Experts,
            [new V1Volume { Name = "placement", ConfigMap = new V1ConfigMapVolumeSource { Name = n.Placement } }],
            [new V1VolumeMount { Name = "placement", MountPath = PlacementMount, ReadOnlyProperty = true }]);
        pod.Spec.AutomountServiceAccountToken = false;
        return new V1StatefulSet
        {
            ApiVersion = "apps/v1",
            Kind = "StatefulSet",
            Metadata = Meta(md, n, n.Experts, Names.ExpertComponent, new Dictionary<string, string> { [Names.PlacementGenerationAnnotation] = placementGeneration.ToString() }),
            Spec = new V1StatefulSetSpec
            {
                Replicas = nodes,
                ServiceName = n.Experts,
                // Nodes hold different experts and start independently: no ordered start-up.
                PodManagementPolicy = "Parallel",
                Selector = new V1LabelSelector { MatchLabels = n.Selector(Names.ExpertComponent) },
                Template = pod,
            },
        };
    }

    private static V1PodTemplateSpec Pod(MoeDeployment md, Names n, string component, string image, int port, List<string> args, List<V1EnvVar> env,
        TierPodSpec? tier, List<V1Volume> volumes, List<V1VolumeMount> mounts)
    {
        var s = md.Spec;
        volumes.AddRange([ModelVolume(s.Model, s.Images?.PullPolicy), new V1Volume { Name = "tmp", EmptyDir = new V1EmptyDirVolumeSource() }]);
        mounts.AddRange([new V1VolumeMount { Name = "model", MountPath = ModelMount, ReadOnlyProperty = s.Model.Demo != true }, new V1VolumeMount { Name = "tmp", MountPath = "/tmp" }]);
        var labels = n.Labels(component);
        return new V1PodTemplateSpec
        {
            Metadata = new V1ObjectMeta { Labels = labels },
            Spec = new V1PodSpec
            {
                Containers =
                [
                    new V1Container
                    {
                        Name = component,
                        Image = image,
                        ImagePullPolicy = (s.Images?.PullPolicy ?? PullPolicy.IfNotPresent).ToString(),
                        Args = args,
                        Env = env.Count > 0 ? env : null,
                        Ports = [new V1ContainerPort { Name = "http", ContainerPort = port, Protocol = "TCP" }],
                        Resources = tier?.Resources,
                        VolumeMounts = mounts,
                        // Loading a large checkpoint takes minutes: the startup probe holds the others off until /healthz answers.
                        StartupProbe = Probe("/healthz", periodSeconds: 10, failureThreshold: 180),
                        LivenessProbe = Probe("/healthz", periodSeconds: 10, failureThreshold: 3),
                        ReadinessProbe = Probe("/readyz", periodSeconds: 2, failureThreshold: 1),
                        SecurityContext = new V1SecurityContext
                        {
                            AllowPrivilegeEscalation = false,
                            ReadOnlyRootFilesystem = true,
                            RunAsNonRoot = true,
                            Capabilities = new V1Capabilities { Drop = ["ALL"] },
                        },
                    },
                ],
                Volumes = volumes,
                NodeSelector = tier?.NodeSelector,
                Tolerations = tier?.Tolerations,
                ImagePullSecrets = s.Images?.PullSecrets?.Select(p => new V1LocalObjectReference { Name = p }).ToList(),
                SecurityContext = new V1PodSecurityContext { RunAsNonRoot = true, SeccompProfile = new V1SeccompProfile { Type = "RuntimeDefault" } },
            },
        };
    }

    private static V1Probe Probe(string path, int periodSeconds, int failureThreshold) => new()
    {
        HttpGet = new V1HTTPGetAction { Path = path, Port = "http" },
        PeriodSeconds = periodSeconds,
        FailureThreshold = failureThreshold,
    };

    private static V1PodDisruptionBudget Budget(MoeDeployment md, Names n, string name, string component, int maxUnavailable) => new()
    {
        ApiVersion = "policy/v1",
        Kind = "PodDisruptionBudget",
        Metadata = Meta(md, n, name, component),
        Spec = new V1PodDisruptionBudgetSpec
        {
            MaxUnavailable = maxUnavailable.ToString(),
            Selector = new V1LabelSelector { MatchLabels = n.Selector(component) },
        },
    };

    /// <summary>Where the programs find the model: the checkpoint folder, or for the demo the folder to generate it into.</summary>
    private static string[] ModelArgs(ModelSource m) =>
        m.Demo == true ? ["--cache-dir", ModelMount] : ["--model", ModelMount + (m.Path == "/" ? "" : m.Path)];

    private static V1Volume ModelVolume(ModelSource m, PullPolicy? pull) => new()
    {
        Name = "model",
        // The demo model is generated into it at start (a few MB).
        EmptyDir = m.Demo == true ? new V1EmptyDirVolumeSource { SizeLimit = new ResourceQuantity("256Mi") } : null,
        PersistentVolumeClaim = m.PersistentVolumeClaim is { } c ? new V1PersistentVolumeClaimVolumeSource { ClaimName = c.ClaimName, ReadOnlyProperty = true } : null,
        HostPath = m.HostPath is { } h ? new V1HostPathVolumeSource { Path = h.Path, Type = "Directory" } : null,
        Image = m.Image is { } i ? new V1ImageVolumeSource { Reference = i.Reference, PullPolicy = (pull ?? PullPolicy.IfNotPresent).ToString() } : null,
    };

    private static V1EnvVar SecretEnv(string name, SecretKeyRef key) => new()
    {
        Name = name,
        ValueFrom = new V1EnvVarSource { SecretKeyRef = new V1SecretKeySelector { Name = key.Name, Key = key.Key } },
    };
}
