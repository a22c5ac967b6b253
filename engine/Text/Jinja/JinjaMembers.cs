namespace MoeMesh.Engine.Text.Jinja;

/// <summary>Attribute, subscript and slice access, and the methods strings and dicts offer.</summary>
internal static class JinjaMembers
{
    /// <summary>value.name: a dict's item or method, a namespace's attribute, a string's method; undefined where there is none.</summary>
    public static object? Attribute(object? target, string name) => target switch
    {
        // Python's Jinja looks for an attribute (a method) before an item: schema.items() works on a schema with an "items" key.
        OrderedDictionary<string, object?> dict => DictMethod(dict, name) is JinjaFunction f ? f : dict.TryGetValue(name, out var v) ? v : JinjaUndefined.Value,
        JinjaNamespace ns => ns.Values.TryGetValue(name, out var v) ? v : JinjaUndefined.Value,
        JinjaString s => JinjaStringMethods.Method(s, name),
        _ => JinjaUndefined.Value,
    };

    public static object? Index(object? target, object? key, int position)
    {
        switch (target)
        {
            case List<object?> list when key is long i:
                if (i < 0) i += list.Count;
                return i >= 0 && i < list.Count ? list[(int)i] : JinjaUndefined.Value;
            case JinjaString s when key is long i:
                if (i < 0) i += s.Text.Length;
                return i >= 0 && i < s.Text.Length ? s.Substring((int)i, 1) : JinjaUndefined.Value;
            case OrderedDictionary<string, object?> dict when key is JinjaString name:
                // Subscript looks for an item before an attribute.
                return dict.TryGetValue(name.Text, out var item) ? item : Attribute(target, name.Text);
            case JinjaNamespace or JinjaString when key is JinjaString name:
                return Attribute(target, name.Text);
            case JinjaUndefined or null:
                return JinjaUndefined.Value;
            default:
                throw new JinjaException($"cannot index {JinjaValues.TypeName(target)} with {JinjaValues.TypeName(key)}", position);
        }
    }

    /// <summary>Python's value[start:stop:step] on a list or string.</summary>
    public static object? Slice(object? target, long? start, long? stop, long? step, int position)
    {
        var length = target switch
        {
            List<object?> list => list.Count,
            JinjaString s => s.Text.Length,
            _ => throw new JinjaException($"cannot slice {JinjaValues.TypeName(target)}", position),
        };
        var by = Math.Clamp(step ?? 1, -(long)int.MaxValue, int.MaxValue);
        if (by == 0) throw new JinjaException("slice step cannot be zero", position);
        var indices = SliceIndices(length, start, stop, by);
        if (target is JinjaString str)
        {
            if (by == 1) return indices.Count == 0 ? JinjaString.Empty : str.Substring(indices[0], indices.Count);
            var result = JinjaString.Empty;
            foreach (var i in indices) result = JinjaString.Concat(result, str.Substring(i, 1));
            return result;
        }
        var items = (List<object?>)target!;
        return indices.Select(i => items[i]).ToList();
    }

    private static List<int> SliceIndices(int length, long? start, long? stop, long step)
    {
        long Clamp(long? v, long whenNull, long low, long high)
        {
            if (v is null) return whenNull;
            var x = v.Value < 0 ? v.Value + length : v.Value;
            return Math.Clamp(x, low, high);
        }
        var indices = new List<int>();
        if (step > 0)
        {
            for (long i = Clamp(start, 0, 0, length), end = Clamp(stop, length, 0, length); i < end; i += step) indices.Add((int)i);
        }
        else
        {
            for (long i = Clamp(start, length - 1, -1, length - 1), end = Clamp(stop, -1, -1, length - 1); i > end; i += step) indices.Add((int)i);
        }
        return indices;
    }

    private static object? DictMethod(OrderedDictionary<string, object?> dict, string name) => name switch
    {
        "items" => (JinjaFunction)((_, _) => dict.Select(p => (object?)new List<object?> { JinjaValues.KeyString(dict, p.Key), p.Value }).ToList()),
        "keys" => (JinjaFunction)((_, _) => dict.Keys.Select(k => (object?)JinjaValues.KeyString(dict, k)).ToList()),
        "values" => (JinjaFunction)((_, _) => dict.Values.ToList()),
        "get" => (JinjaFunction)((args, _) => args.Count >= 1 && args[0] is JinjaString key && dict.TryGetValue(key.Text, out var v)
            ? v : args.Count >= 2 ? args[1] : null),
        _ => JinjaUndefined.Value,
    };
}
