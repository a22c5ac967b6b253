using System.Security.Cryptography;
using System.Text;

namespace MoeMesh.Engine.Dispatch;

/// <summary>
/// A shared secret carried as "Authorization: Bearer KEY": the gateway's --api-key for its clients, and
/// the expert nodes' --api-key that gateways present as --expert-api-key. Checked in constant time.
/// </summary>
public sealed class BearerKey
{
    private readonly byte[] _key;

    public BearerKey(string key)
    {
        if (string.IsNullOrWhiteSpace(key)) throw new ArgumentException("an API key must not be empty");
        _key = Encoding.UTF8.GetBytes(key.Trim());
        HeaderValue = $"Bearer {key.Trim()}";
    }

    /// <summary>The Authorization header value that presents this key.</summary>
    public string HeaderValue { get; }

    /// <summary>A key from an option's value; null when the option is absent or empty.</summary>
    public static BearerKey? From(string? key) => string.IsNullOrWhiteSpace(key) ? null : new BearerKey(key);

    /// <summary>Whether an Authorization header value presents this key.</summary>
    public bool Accepts(string? authorization)
    {
        var given = authorization is not null && authorization.StartsWith("Bearer ", StringComparison.Ordinal)
            ? Encoding.UTF8.GetBytes(authorization[7..].Trim())
            : [];
        return CryptographicOperations.FixedTimeEquals(given, _key);
    }
}
