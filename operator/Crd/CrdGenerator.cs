using System.Collections;
using System.ComponentModel;
using System.ComponentModel.DataAnnotations;
using System.Reflection;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using MoeMesh.Operator.Resources;

namespace MoeMesh.Operator.Crd;

/// <summary>
/// The MoeDeployment CRD, generated from the C# types (their JSON names, descriptions, ranges, lengths,
/// patterns, defaults and CEL rules): the one source of the schema. `moemesh-operator crd` prints it; a test
/// keeps the checked-in copy equal.
/// </summary>
public static class CrdGenerator
{
    public static V1CustomResourceDefinition Generate() => new()
    {
        ApiVersion = "apiextensions.k8s.io/v1",
        Kind = "CustomResourceDefinition",
        Metadata = new V1ObjectMeta { Name = $"{MoeDeployment.Plural}.{MoeDeployment.Group}" },
        Spec = new V1CustomResourceDefinitionSpec
        {
            Group = MoeDeployment.Group,
            Scope = "Namespaced",
            Names = new V1CustomResourceDefinitionNames
            {
                Kind = MoeDeployment.KindName,
                ListKind = MoeDeployment.KindName + "List",
                Plural = MoeDeployment.Plural,
                Singular = MoeDeployment.Singular,
                ShortNames = [MoeDeployment.ShortName],
                Categories = ["moemesh"],
            },
            Versions =
            [
                new V1CustomResourceDefinitionVersion
                {
                    Name = MoeDeployment.Version,
                    Served = true,
                    Storage = true,
                    Schema = new V1CustomResourceValidation { OpenAPIV3Schema = RootSchema() },
                    Subresources = new V1CustomResourceSubresources
                    {
                        Status = new Dictionary<string, object>(),
                        // The gateway tier is the one kubectl scale, an HPA or KEDA drives.
                        Scale = new V1CustomResourceSubresourceScale
                        {
                            SpecReplicasPath = ".spec.gateway.replicas",
                            StatusReplicasPath = ".status.gateway.ready",
                            LabelSelectorPath = ".status.gatewaySelector",
                        },
                    },
                    AdditionalPrinterColumns =
                    [
                        Column("Model", "string", ".spec.model.servedModelName", "Model id the API serves"),
                        Column("Ready", "string", ".status.conditions[?(@.type==\"Ready\")].status", "Whether the deployment serves"),
                        Column("Gateways", "integer", ".status.gateway.ready", "Ready gateway replicas"),
                        Column("Experts", "integer", ".status.experts.ready", "Ready expert nodes"),
                        Column("Reason", "string", ".status.conditions[?(@.type==\"Ready\")].reason", "Why it is (not) ready", priority: 1),
                        Column("URL", "string", ".status.url", "In-cluster URL of the gateway Service", priority: 1),
                        Column("Age", "date", ".metadata.creationTimestamp", "Time since creation"),
                    ],
                },
            ],
        },
    };

    /// <summary>The CRD as YAML, as checked in next to the chart.</summary>
    public static string Yaml() => KubernetesYaml.Serialize(Generate());

    private static V1CustomResourceColumnDefinition Column(string name, string type, string path, string description, int priority = 0) =>
        new() { Name = name, Type = type, JsonPath = path, Description = description, Priority = priority == 0 ? null : priority };

    private static V1JSONSchemaProps RootSchema() => new()
    {
        Type = "object",
        Description = "One served MoE model: a gateway tier, an expert tier, their placement and KV store.",
        Required = ["spec"],
        XKubernetesValidations =
        [
            new V1ValidationRule { Rule = $"self.metadata.name.size() <= {Desired.Names.MaxNameLength}", Message = $"the name is at most {Desired.Names.MaxNameLength} characters: it prefixes the names of the pods, Services and ConfigMap the operator creates" },
        ],
        Properties = new Dictionary<string, V1JSONSchemaProps>
        {
            ["apiVersion"] = new() { Type = "string" },
            ["kind"] = new() { Type = "string" },
            ["metadata"] = new() { Type = "object" },
            ["spec"] = Schema(typeof(MoeDeploymentSpec), null),
            ["status"] = Schema(typeof(MoeDeploymentStatus), null),
        },
    };

    private static V1JSONSchemaProps Schema(Type type, PropertyInfo? property)
    {
        var t = Nullable.GetUnderlyingType(type) ?? type;
        var s = TypeSchema(t);
        if (property is not null) ApplyAttributes(s, property);
        return s;
    }

    private static V1JSONSchemaProps TypeSchema(Type t)
    {
        if (t == typeof(string)) return new() { Type = "string" };
        if (t == typeof(int)) return new() { Type = "integer", Format = "int32" };
        if (t == typeof(long)) return new() { Type = "integer", Format = "int64" };
        if (t == typeof(bool)) return new() { Type = "boolean" };
        if (t == typeof(double)) return new() { Type = "number", Format = "double" };
        if (t == typeof(DateTime)) return new() { Type = "string", Format = "date-time" };
        if (t.IsEnum) return new() { Type = "string", EnumProperty = Enum.GetNames(t).Cast<object>().ToList() };
        if (t == typeof(ResourceQuantity) || t == typeof(IntOrString))
        {
            return new()
            {
                XKubernetesIntOrString = true,
                AnyOf = [new V1JSONSchemaProps { Type = "integer" }, new V1JSONSchemaProps { Type = "string" }],
                Pattern = t == typeof(ResourceQuantity) ? @"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$" : null,
            };
        }
        if (Generic(t, typeof(IDictionary<,>)) is { } dict) return new() { Type = "object", AdditionalProperties = Schema(dict[1], null) };
        if (t != typeof(string) && Generic(t, typeof(IList<>)) is { } list) return new() { Type = "array", Items = Schema(list[0], null) };
        return ObjectSchema(t);
    }

    private static V1JSONSchemaProps ObjectSchema(Type t)
    {
        var properties = new Dictionary<string, V1JSONSchemaProps>();
        var required = new List<string>();
        foreach (var p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (p.GetCustomAttribute<JsonPropertyNameAttribute>()?.Name is not { } name) continue;
            properties[name] = Schema(p.PropertyType, p);
            if (p.GetCustomAttribute<RequiredAttribute>() is not null) required.Add(name);
        }
        var s = new V1JSONSchemaProps { Type = "object", Properties = properties.Count > 0 ? properties : null, Required = required.Count > 0 ? required : null };
        var rules = t.GetCustomAttributes<CelAttribute>().Select(c => new V1ValidationRule { Rule = c.Rule, Message = c.Message }).ToList();
        if (rules.Count > 0) s.XKubernetesValidations = rules;
        return s;
    }

    private static void ApplyAttributes(V1JSONSchemaProps s, PropertyInfo p)
    {
        if (p.GetCustomAttribute<DescriptionAttribute>() is { } d) s.Description = d.Description;
        if (p.GetCustomAttribute<RangeAttribute>() is { } r)
        {
            s.Minimum = Convert.ToDouble(r.Minimum, System.Globalization.CultureInfo.InvariantCulture);
            s.Maximum = Convert.ToDouble(r.Maximum, System.Globalization.CultureInfo.InvariantCulture);
        }
        if (p.GetCustomAttribute<StringLengthAttribute>() is { } len)
        {
            s.MaxLength = len.MaximumLength;
            if (len.MinimumLength > 0) s.MinLength = len.MinimumLength;
        }
        if (p.GetCustomAttribute<MaxLengthAttribute>() is { } items) s.MaxItems = items.Length;
        if (p.GetCustomAttribute<RegularExpressionAttribute>() is { } re) s.Pattern = re.Pattern;
        if (p.GetCustomAttribute<DefaultValueAttribute>() is { Value: { } value }) s.DefaultProperty = value;
        var rules = p.GetCustomAttributes<CelAttribute>().Select(c => new V1ValidationRule { Rule = c.Rule, Message = c.Message }).ToList();
        if (rules.Count > 0) s.XKubernetesValidations = (s.XKubernetesValidations ?? []).Concat(rules).ToList();
    }

    /// <summary>The type arguments of <paramref name="definition"/> when <paramref name="t"/> is or implements it.</summary>
    private static Type[]? Generic(Type t, Type definition)
    {
        if (t.IsGenericType && t.GetGenericTypeDefinition() == definition) return t.GetGenericArguments();
        return t.GetInterfaces().FirstOrDefault(i => i.IsGenericType && i.GetGenericTypeDefinition() == definition)?.GetGenericArguments();
    }
}
