namespace MoeMesh.Gateway.KvStore;

/// <summary>The shared store's settings (--kv-store and the --kv-store-* options).</summary>
public sealed record KvStoreSettings(string Url, string KeyPrefix, TimeSpan Ttl, TimeSpan LookupBudget, long WriteQueueBytes, string? Password = null);
