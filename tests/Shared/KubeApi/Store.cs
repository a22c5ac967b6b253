using System.Text.Json.Nodes;
using System.Threading.Channels;

namespace MoeMesh.Testing.KubeApi;

/// <summary>An API error as the server reports it (a metav1 Status).</summary>
public sealed class ApiError(int code, string reason, string message) : Exception(message)
{
    public int Code => code;
    public string Reason => reason;
}

/// <summary>
/// The objects of the test API server, with Kubernetes' write semantics: resource versions and optimistic
/// concurrency, generation on spec changes, status kept apart for kinds with a status subresource,
/// server-side apply per field manager (fields a manager stops applying are removed; another applier's field
/// is a conflict unless forced; an apply that changes nothing writes nothing), garbage collection through
/// owner references (dependents of a deleted owner, and objects created for an owner already gone), and a
/// history every watch can start from.
/// </summary>
public sealed class Store
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(ResourceType Type, string Ns, string Name), Entry> _objects = [];
    private readonly List<(long Rv, ResourceType Type, string Event, JsonObject Object)> _history = [];
    private readonly List<Watcher> _watchers = [];
    private long _rv = 100;

    private sealed class Entry(JsonObject obj)
    {
        public JsonObject Object = obj;
        /// <summary>Each applier's last applied configuration.</summary>
        public readonly Dictionary<string, JsonObject> Applied = [];
    }

    public sealed record Watcher(ResourceType Type, string? Ns, Func<JsonObject, bool> Match, Channel<(string Event, JsonObject Object)> Events);

    public long ResourceVersion
    {
        get
        {
            lock (_lock) return _rv;
        }
    }

    /// <summary>Every version an object of the type has had, in order (what a watch from the start sees).</summary>
    public IReadOnlyList<JsonObject> History(ResourceType t)
    {
        lock (_lock) return _history.Where(h => h.Type == t).Select(h => h.Object.DeepClone().AsObject()).ToArray();
    }

    public JsonObject? Get(ResourceType t, string ns, string name)
    {
        lock (_lock) return _objects.GetValueOrDefault((t, Key(t, ns), name))?.Object.DeepClone().AsObject();
    }

    public IReadOnlyList<JsonObject> List(ResourceType t, string? ns, Func<JsonObject, bool> match)
    {
        lock (_lock)
        {
            return _objects.Where(kv => kv.Key.Type == t && (ns is null || !t.Namespaced || kv.Key.Ns == ns) && match(kv.Value.Object))
                .OrderBy(kv => kv.Key.Ns).ThenBy(kv => kv.Key.Name)
                .Select(kv => kv.Value.Object.DeepClone().AsObject()).ToArray();
        }
    }

    public JsonObject Create(ResourceType t, string ns, JsonObject o)
    {
        lock (_lock)
        {
            var meta = Meta(o);
            if (meta["name"]?.ToString() is not { Length: > 0 } name)
            {
                if (meta["generateName"]?.ToString() is not { } prefix) throw new ApiError(422, "Invalid", "metadata.name: Required value");
                name = prefix + Guid.NewGuid().ToString("N")[..5];
                meta["name"] = name;
            }
            var key = (t, Key(t, ns), name);
            if (_objects.ContainsKey(key)) throw new ApiError(409, "AlreadyExists", $"{t.Plural} \"{name}\" already exists");
            if (t.HasStatus) o.Remove("status");
            o["apiVersion"] = t.GroupVersion;
            o["kind"] = t.Kind;
            if (t.Namespaced) meta["namespace"] = ns;
            meta["uid"] = Guid.NewGuid().ToString();
            meta["creationTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ");
            meta["generation"] = 1L;
            meta.Remove("deletionTimestamp");
            var entry = new Entry(o);
            _objects[key] = entry;
            Commit(t, "ADDED", o);
            var created = o.DeepClone().AsObject();
            // The garbage collector removes what is created for an owner that is already gone.
            if (o["metadata"]?["ownerReferences"] is JsonArray owners && owners.Count > 0
                && owners.All(r => !_objects.Values.Any(e => e.Object["metadata"]?["uid"]?.ToString() == r?["uid"]?.ToString())))
                Remove(t, ns, name, entry);
            return created;
        }
    }

    /// <summary>PUT: the whole object (or only its status), checked against the resource version the writer read.</summary>
    public JsonObject Replace(ResourceType t, string ns, string name, JsonObject o, bool status)
    {
        lock (_lock)
        {
            var entry = Find(t, ns, name);
            var sentRv = Meta(o)["resourceVersion"]?.ToString();
            if (!string.IsNullOrEmpty(sentRv) && sentRv != Meta(entry.Object)["resourceVersion"]?.ToString())
                throw new ApiError(409, "Conflict", $"Operation cannot be fulfilled on {t.Plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again");
            JsonObject next;
            if (status)
            {
                next = entry.Object.DeepClone().AsObject();
                next["status"] = o["status"]?.DeepClone();
            }
            else
            {
                next = o.DeepClone().AsObject();
                KeepServerFields(entry.Object, next, t);
            }
            return Write(t, entry, next);
        }
    }

    /// <summary>A merge patch of the object (or its status); <paramref name="edit"/> may also change it in place.</summary>
    public JsonObject Patch(ResourceType t, string ns, string name, Action<JsonObject> edit, bool status)
    {
        lock (_lock)
        {
            var entry = Find(t, ns, name);
            var next = entry.Object.DeepClone().AsObject();
            edit(next);
            if (status)
            {
                var s = next["status"]?.DeepClone();
                next = entry.Object.DeepClone().AsObject();
                next["status"] = s;
            }
            else KeepServerFields(entry.Object, next, t);
            return Write(t, entry, next);
        }
    }

    /// <summary>Server-side apply by <paramref name="manager"/>; returns the object and whether it was created.</summary>
    public (JsonObject Object, bool Created) Apply(ResourceType t, string ns, string name, JsonObject applied, string manager, bool force)
    {
        lock (_lock)
        {
            if (!_objects.TryGetValue((t, Key(t, ns), name), out var entry))
            {
                Meta(applied)["name"] = name;
                var created = Create(t, ns, applied.DeepClone().AsObject());
                _objects[(t, Key(t, ns), name)].Applied[manager] = Strip(applied);
                return (created, true);
            }
            var config = Strip(applied);
            if (!force)
            {
                var conflicts = entry.Applied.Where(a => a.Key != manager)
                    .SelectMany(a => JsonMerge.Differences(a.Value, config).Where(p => JsonPaths.Get(a.Value, p) is not null).Select(p => $"{p} (manager {a.Key})"))
                    .ToArray();
                if (conflicts.Length > 0) throw new ApiError(409, "Conflict", $"Apply failed with {conflicts.Length} conflict(s): {string.Join(", ", conflicts)}");
            }
            var next = entry.Object.DeepClone().AsObject();
            if (entry.Applied.TryGetValue(manager, out var before)) JsonMerge.RemoveDropped(next, before, config);
            JsonMerge.MergePatch(next, config);
            // Forced: the fields move to this manager.
            foreach (var other in entry.Applied.Where(a => a.Key != manager).Select(a => a.Value))
                foreach (var path in JsonMerge.Differences(other, config).Where(p => JsonPaths.Get(other, p) is not null))
                    RemovePath(other, path);
            entry.Applied[manager] = config;
            KeepServerFields(entry.Object, next, t);
            return (Write(t, entry, next), false);
        }
    }

    public JsonObject Delete(ResourceType t, string ns, string name)
    {
        lock (_lock)
        {
            var entry = Find(t, ns, name);
            Remove(t, ns, name, entry);
            return entry.Object.DeepClone().AsObject();
        }
    }

    public Watcher Watch(ResourceType t, string? ns, Func<JsonObject, bool> match, string? fromVersion)
    {
        lock (_lock)
        {
            var w = new Watcher(t, ns, match, Channel.CreateUnbounded<(string, JsonObject)>());
            if (string.IsNullOrEmpty(fromVersion) || fromVersion == "0")
            {
                foreach (var o in List(t, ns, match)) w.Events.Writer.TryWrite(("ADDED", o));
            }
            else
            {
                var from = long.Parse(fromVersion);
                if (from < _history.FirstOrDefault().Rv - 1) throw new ApiError(410, "Expired", "too old resource version");
                foreach (var h in _history.Where(h => h.Rv > from && h.Type == t && InScope(w, h.Object) && match(h.Object)))
                    w.Events.Writer.TryWrite((h.Event, h.Object.DeepClone().AsObject()));
            }
            _watchers.Add(w);
            return w;
        }
    }

    public void StopWatching(Watcher w)
    {
        lock (_lock) _watchers.Remove(w);
    }

    private JsonObject Write(ResourceType t, Entry entry, JsonObject next)
    {
        var spec = ResourceType.SpecPart(entry.Object);
        if (JsonNode.DeepEquals(Comparable(entry.Object), Comparable(next))) return entry.Object.DeepClone().AsObject();
        if (!JsonNode.DeepEquals(spec, ResourceType.SpecPart(next)))
            Meta(next)["generation"] = (long.TryParse(Meta(entry.Object)["generation"]?.ToString(), out var g) ? g : 1) + 1;
        entry.Object = next;
        Commit(t, "MODIFIED", next);
        return next.DeepClone().AsObject();
    }

    private void Remove(ResourceType t, string ns, string name, Entry entry)
    {
        _objects.Remove((t, Key(t, ns), name));
        Commit(t, "DELETED", entry.Object);
        var uid = Meta(entry.Object)["uid"]?.ToString();
        // The garbage collector: dependents whose owner is gone go too (background propagation).
        var dependents = _objects.Where(kv => (kv.Value.Object["metadata"]?["ownerReferences"] as JsonArray)?.Any(r => r?["uid"]?.ToString() == uid) == true).ToArray();
        foreach (var d in dependents)
            if (_objects.ContainsKey(d.Key)) Remove(d.Key.Type, d.Key.Ns, d.Key.Name, d.Value);
    }

    private void Commit(ResourceType t, string type, JsonObject o)
    {
        var rv = ++_rv;
        if (type != "DELETED") Meta(o)["resourceVersion"] = rv.ToString();
        var snapshot = o.DeepClone().AsObject();
        _history.Add((rv, t, type, snapshot));
        foreach (var w in _watchers.Where(w => w.Type == t && InScope(w, snapshot) && w.Match(snapshot)))
            w.Events.Writer.TryWrite((type, snapshot.DeepClone().AsObject()));
    }

    private static bool InScope(Watcher w, JsonObject o) => w.Ns is null || !w.Type.Namespaced || o["metadata"]?["namespace"]?.ToString() == w.Ns;

    private Entry Find(ResourceType t, string ns, string name) =>
        _objects.GetValueOrDefault((t, Key(t, ns), name)) ?? throw new ApiError(404, "NotFound", $"{t.Plural}.{t.Group} \"{name}\" not found");

    private static string Key(ResourceType t, string ns) => t.Namespaced ? ns : "";

    private static JsonObject Meta(JsonObject o) => o["metadata"] as JsonObject ?? (JsonObject)(o["metadata"] = new JsonObject());

    /// <summary>Keeps what only the server sets (identity, versions, timestamps) and, with a status subresource, the status.</summary>
    private static void KeepServerFields(JsonObject current, JsonObject next, ResourceType t)
    {
        var from = Meta(current);
        var to = Meta(next);
        foreach (var k in new[] { "uid", "creationTimestamp", "generation", "resourceVersion", "namespace", "name" })
            to[k] = from[k]?.DeepClone();
        next["apiVersion"] = t.GroupVersion;
        next["kind"] = t.Kind;
        if (t.HasStatus)
        {
            if (current["status"] is { } s) next["status"] = s.DeepClone();
            else next.Remove("status");
        }
    }

    private static JsonObject Comparable(JsonObject o)
    {
        var c = o.DeepClone().AsObject();
        (c["metadata"] as JsonObject)?.Remove("resourceVersion");
        return c;
    }

    /// <summary>An applied configuration as stored: without status and server-set metadata.</summary>
    private static JsonObject Strip(JsonObject applied)
    {
        var c = applied.DeepClone().AsObject();
        c.Remove("status");
        if (c["metadata"] is JsonObject m)
            foreach (var k in new[] { "uid", "creationTimestamp", "generation", "resourceVersion", "managedFields" })
                m.Remove(k);
        return c;
    }

    private static void RemovePath(JsonObject root, string path)
    {
        var steps = path.TrimStart('.').Split('.');
        var node = root;
        foreach (var s in steps[..^1])
            if (node[s] is JsonObject next) node = next;
            else return;
        node.Remove(steps[^1]);
    }
}
