using StackExchange.Redis;

namespace MoeMesh.Gateway.KvStore;

/// <summary>Reads --kv-store's redis://[user:password@]HOST[:PORT][/DB] and rediss://... (TLS) into client settings.</summary>
public static class RedisUrl
{
    public const string Syntax = "redis://[user:password@]HOST:PORT[/DB] or rediss://...";

    /// <summary>The client settings; throws <see cref="FormatException"/> for anything else.</summary>
    public static ConfigurationOptions Parse(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("redis" or "rediss") || string.IsNullOrEmpty(uri.DnsSafeHost))
            throw new FormatException($"expected memory, {Syntax}");
        if (uri.Query.Length > 0 || uri.Fragment.Length > 0) throw new FormatException("a Redis URL takes no query or fragment");
        var path = uri.AbsolutePath.Trim('/');
        var db = 0;
        if (path.Length > 0 && (!int.TryParse(path, System.Globalization.NumberStyles.None, null, out db)))
            throw new FormatException($"'/{path}': the database is a number");
        var options = new ConfigurationOptions
        {
            // Redis is a cache: the gateway starts and serves without it, and reconnects by itself.
            AbortOnConnectFail = false,
            BacklogPolicy = BacklogPolicy.FailFast,
            ReconnectRetryPolicy = new LinearRetry(1000),
            ConnectTimeout = 2000,
            AsyncTimeout = 5000,
            SyncTimeout = 5000,
            ClientName = "moemesh-gateway",
            DefaultDatabase = db,
            Ssl = uri.Scheme == "rediss",
        };
        options.EndPoints.Add(uri.DnsSafeHost, uri.Port > 0 ? uri.Port : 6379);
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':');
            var user = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (user.Length > 0) options.User = user;
            if (colon >= 0) options.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        }
        return options;
    }

    /// <summary>The URL without its credentials, for logs and /readyz.</summary>
    public static string Redacted(string url)
    {
        var uri = new Uri(url);
        var db = uri.AbsolutePath.Trim('/');
        return $"{uri.Scheme}://{uri.Host}:{(uri.Port > 0 ? uri.Port : 6379)}/{(db.Length > 0 ? db : "0")}";
    }
}
