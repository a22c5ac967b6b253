using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Text.Json.Serialization;
using MoeMesh.Operator.Crd;

namespace MoeMesh.Operator.Resources;

/// <summary>The desired deployment: what to serve and how each tier runs.</summary>
public sealed class MoeDeploymentSpec
{
    [JsonPropertyName("model"), Required]
    [Description("The checkpoint to serve. A MoeDeployment serves one model for its life: deploy another model as another MoeDeployment.")]
    [Cel("self == oldSelf", "spec.model cannot change: deploy another model as another MoeDeployment")]
    public ModelSource Model { get; set; } = new();

    [JsonPropertyName("images")]
    [Description("Container images of the gateway and the expert nodes.")]
    public ImageSpec? Images { get; set; }

    [JsonPropertyName("gateway")]
    [Description("The gateway tier: the OpenAI-compatible API, attention, routers, shared experts, dense layers.")]
    public GatewayTierSpec? Gateway { get; set; }

    [JsonPropertyName("experts")]
    [Description("The expert tier: nodes holding the routed experts.")]
    public ExpertTierSpec? Experts { get; set; }

    [JsonPropertyName("kvStore")]
    [Description("Where the gateways share latent KV pages; absent: each gateway keeps its own.")]
    public KvStoreSpec? KvStore { get; set; }

    [JsonPropertyName("apiKeySecret")]
    [Description("The Secret key holding the bearer key of the inference API; absent: the API is open to whoever reaches the Service.")]
    public SecretKeyRef? ApiKeySecret { get; set; }

    [JsonPropertyName("scaling")]
    [Description("Autoscaling of both tiers and expert placement; filled in by the autoscaling release.")]
    public ScalingSpec? Scaling { get; set; }
}

/// <summary>A checkpoint folder on a volume.</summary>
[Cel("[has(self.persistentVolumeClaim), has(self.hostPath), has(self.image), has(self.demo) && self.demo].filter(x, x).size() == 1", "set exactly one of persistentVolumeClaim, hostPath, image and demo: true")]
public sealed class ModelSource
{
    [JsonPropertyName("path"), RegularExpression("^/.*"), StringLength(1024, MinimumLength = 1), DefaultValue("/")]
    [Description("Folder of the Hugging Face checkpoint (config.json, *.safetensors, tokenizer files) inside the volume, as an absolute path.")]
    public string Path { get; set; } = "/";

    [JsonPropertyName("demo")]
    [Description("Serve the built-in demo model instead of a checkpoint: random weights of a tiny DeepSeek-V3 shape, generated identically in every pod (no volume, no download). For trying MoeMesh on any cluster, CPU only; its output is noise.")]
    public bool? Demo { get; set; }

    [JsonPropertyName("servedModelName"), StringLength(253)]
    [Description("Model id clients send and /v1/models reports; default: the MoeDeployment's name.")]
    public string? ServedModelName { get; set; }

    [JsonPropertyName("persistentVolumeClaim")]
    [Description("A PersistentVolumeClaim holding the checkpoint, mounted read-only.")]
    public ClaimSource? PersistentVolumeClaim { get; set; }

    [JsonPropertyName("hostPath")]
    [Description("A folder of the node, mounted read-only (single-node clusters and tests).")]
    public HostPathSource? HostPath { get; set; }

    [JsonPropertyName("image")]
    [Description("An OCI image holding the checkpoint, mounted as an image volume (Kubernetes 1.31+).")]
    public ImageVolumeSource? Image { get; set; }
}

public sealed class ClaimSource
{
    [JsonPropertyName("claimName"), Required, StringLength(253, MinimumLength = 1)]
    [Description("Name of the PersistentVolumeClaim in the MoeDeployment's namespace.")]
    public string ClaimName { get; set; } = "";
}

public sealed class HostPathSource
{
    [JsonPropertyName("path"), Required, RegularExpression("^/.*")]
    [Description("Absolute path of the folder on the node.")]
    public string Path { get; set; } = "/";
}

public sealed class ImageVolumeSource
{
    [JsonPropertyName("reference"), Required, StringLength(1024, MinimumLength = 1)]
    [Description("Image reference of the checkpoint image.")]
    public string Reference { get; set; } = "";
}

/// <summary>When a node pulls an image (Kubernetes' imagePullPolicy).</summary>
public enum PullPolicy
{
    IfNotPresent,
    Always,
    Never,
}

public sealed class ImageSpec
{
    [JsonPropertyName("gateway"), DefaultValue("moemesh/gateway:0.1.0")]
    [Description("Image of the gateway.")]
    public string? Gateway { get; set; }

    [JsonPropertyName("expertNode"), DefaultValue("moemesh/expert-node:0.1.0")]
    [Description("Image of the expert nodes.")]
    public string? ExpertNode { get; set; }

    [JsonPropertyName("pullPolicy"), DefaultValue("IfNotPresent")]
    [Description("Image pull policy of both.")]
    public PullPolicy? PullPolicy { get; set; }

    [JsonPropertyName("pullSecrets"), MaxLength(16)]
    [Description("Names of Secrets to pull the images with.")]
    public IList<string>? PullSecrets { get; set; }
}
