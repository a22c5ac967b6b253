namespace MoeMesh.Operator.Crd;

/// <summary>A CEL validation rule (x-kubernetes-validations) on a field or on every object of a type; the API server enforces it.</summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Class, AllowMultiple = true)]
public sealed class CelAttribute(string rule, string message) : Attribute
{
    public string Rule { get; } = rule;
    public string Message { get; } = message;
}
