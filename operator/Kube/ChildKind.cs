using k8s;
using k8s.Models;
using MoeMesh.Operator.Desired;

namespace MoeMesh.Operator.Kube;

/// <summary>
/// One kind of child the operator manages, with the API calls it makes on it: server-side apply, delete, list
/// and watch by label. The RBAC the operator needs is exactly these verbs on these kinds (see <see cref="All"/>).
/// </summary>
public sealed record ChildKind(
    string Kind, string Group, string Plural,
    Func<IKubernetes, IKubernetesObject<V1ObjectMeta>, CancellationToken, Task<IKubernetesObject<V1ObjectMeta>>> Apply,
    Func<IKubernetes, string, string, CancellationToken, Task> Delete,
    Func<IKubernetes, string, string, CancellationToken, Task<IEnumerable<V1ObjectMeta>>> List,
    Func<IKubernetes, string?, string, CancellationToken, IAsyncEnumerable<(WatchEventType Type, V1ObjectMeta Meta)>> Watch)
{
    private static V1Patch Body(IKubernetesObject<V1ObjectMeta> o) => new(o, V1Patch.PatchType.ApplyPatch);
    private const string Manager = Names.FieldManager;
    private const string Background = "Background";

    /// <summary>Every kind of child, in the order DesiredState lists them.</summary>
    public static readonly IReadOnlyList<ChildKind> All =
    [
        new("ServiceAccount", "", "serviceaccounts",
            async (c, o, ct) => await c.CoreV1.PatchNamespacedServiceAccountAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.CoreV1.DeleteNamespacedServiceAccountAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.CoreV1.ListNamespacedServiceAccountAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.CoreV1.WatchListServiceAccountForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.CoreV1.WatchListNamespacedServiceAccountAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("Role", "rbac.authorization.k8s.io", "roles",
            async (c, o, ct) => await c.RbacAuthorizationV1.PatchNamespacedRoleAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.RbacAuthorizationV1.DeleteNamespacedRoleAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.RbacAuthorizationV1.ListNamespacedRoleAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.RbacAuthorizationV1.WatchListRoleForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.RbacAuthorizationV1.WatchListNamespacedRoleAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("RoleBinding", "rbac.authorization.k8s.io", "rolebindings",
            async (c, o, ct) => await c.RbacAuthorizationV1.PatchNamespacedRoleBindingAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.RbacAuthorizationV1.DeleteNamespacedRoleBindingAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.RbacAuthorizationV1.ListNamespacedRoleBindingAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.RbacAuthorizationV1.WatchListRoleBindingForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.RbacAuthorizationV1.WatchListNamespacedRoleBindingAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("ConfigMap", "", "configmaps",
            async (c, o, ct) => await c.CoreV1.PatchNamespacedConfigMapAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.CoreV1.DeleteNamespacedConfigMapAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.CoreV1.ListNamespacedConfigMapAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.CoreV1.WatchListConfigMapForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.CoreV1.WatchListNamespacedConfigMapAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("Service", "", "services",
            async (c, o, ct) => await c.CoreV1.PatchNamespacedServiceAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.CoreV1.DeleteNamespacedServiceAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.CoreV1.ListNamespacedServiceAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.CoreV1.WatchListServiceForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.CoreV1.WatchListNamespacedServiceAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("StatefulSet", "apps", "statefulsets",
            async (c, o, ct) => await c.AppsV1.PatchNamespacedStatefulSetAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.AppsV1.DeleteNamespacedStatefulSetAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.AppsV1.ListNamespacedStatefulSetAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.AppsV1.WatchListStatefulSetForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.AppsV1.WatchListNamespacedStatefulSetAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("PodDisruptionBudget", "policy", "poddisruptionbudgets",
            async (c, o, ct) => await c.PolicyV1.PatchNamespacedPodDisruptionBudgetAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.PolicyV1.DeleteNamespacedPodDisruptionBudgetAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.PolicyV1.ListNamespacedPodDisruptionBudgetAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.PolicyV1.WatchListPodDisruptionBudgetForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.PolicyV1.WatchListNamespacedPodDisruptionBudgetAsync(ns, labelSelector: sel, cancellationToken: ct))),
        new("Deployment", "apps", "deployments",
            async (c, o, ct) => await c.AppsV1.PatchNamespacedDeploymentAsync(Body(o), o.Name(), o.Namespace(), fieldManager: Manager, force: true, cancellationToken: ct),
            (c, ns, name, ct) => c.AppsV1.DeleteNamespacedDeploymentAsync(name, ns, propagationPolicy: Background, cancellationToken: ct),
            async (c, ns, sel, ct) => (await c.AppsV1.ListNamespacedDeploymentAsync(ns, labelSelector: sel, cancellationToken: ct)).Items.Select(i => i.Metadata),
            (c, ns, sel, ct) => Metas(ns is null ? c.AppsV1.WatchListDeploymentForAllNamespacesAsync(labelSelector: sel, cancellationToken: ct)
                : c.AppsV1.WatchListNamespacedDeploymentAsync(ns, labelSelector: sel, cancellationToken: ct))),
    ];

    public static ChildKind Of(IKubernetesObject<V1ObjectMeta> o) => All.First(k => k.Kind == o.Kind);

    private static async IAsyncEnumerable<(WatchEventType, V1ObjectMeta)> Metas<T>(IAsyncEnumerable<(WatchEventType, T)> events) where T : IMetadata<V1ObjectMeta>
    {
        await foreach (var (type, item) in events) yield return (type, item.Metadata);
    }
}
