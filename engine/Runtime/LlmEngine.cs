using System.Runtime.InteropServices;
using MoeMesh.Engine.Experts;
using MoeMesh.Engine.Kv;
using MoeMesh.Engine.Model;
using MoeMesh.Engine.Sampling;
using MoeMesh.Engine.Sampling.Grammar;
using MoeMesh.Engine.Scheduling;
using MoeMesh.Engine.Text;
using static TorchSharp.torch;

namespace MoeMesh.Engine.Runtime;

/// <summary>
/// Ties the parts together: each <see cref="Step"/> schedules a batch, runs the model over it,
/// samples the sequences that reached their last token and reports what changed.
/// Not thread-safe: one loop owns it.
/// </summary>
public sealed class LlmEngine : IDisposable
{
    private readonly DeepSeekModel _model;
    private readonly LatentKvCache _cache;
    private readonly Scheduler _scheduler;
    private readonly HfTokenizer? _tokenizer;
    private readonly Dictionary<long, OutputText> _texts = new();
    private readonly int _microBatches;
    private readonly int _microBatchMinTokens;
    private readonly List<CachedPage>? _computedPages;
    private long _nextId;

    public int? EosTokenId { get; }
    public int MaxModelLength { get; }
    public DeepSeekModel Model => _model;
    public LatentKvCache Cache => _cache;
    public int WaitingCount => _scheduler.WaitingCount;
    public int RunningCount => _scheduler.RunningCount;
    public bool HasWork => _scheduler.HasWork;
    public double CacheUsage => (double)_scheduler.Allocator.UsedPages / _scheduler.Allocator.PageCount;

    /// <summary>Prompt tokens looked up in the prefix cache on admission, and those found there (not recomputed).</summary>
    public long PrefixQueryTokens => _scheduler.PrefixQueryTokens;
    public long PrefixHitTokens => _scheduler.PrefixHitTokens;

    /// <summary>
    /// Called when a step fails and its sequences end with an error: the exception (for the log) and the
    /// reference the sequences' error text carries instead of it.
    /// </summary>
    public Action<Exception, string>? StepFailed { get; set; }

    public LlmEngine(DeepSeekModel model, EngineOptions options, HfTokenizer? tokenizer, int? eosTokenId)
    {
        _model = model;
        _tokenizer = tokenizer;
        EosTokenId = eosTokenId;
        // The token masks' trie (a second or two on a 129k vocabulary) is built off the compute thread as the engine
        // starts, so that the first constrained request does not stall every running sequence.
        if (tokenizer is not null) _masks = Task.Run(() => BuildMasks(tokenizer, model.Config.VocabSize));
        _microBatches = options.MicroBatches;
        _microBatchMinTokens = options.MicroBatchMinTokens;
        if (options.RecordComputedPages && options.PrefixCaching) _computedPages = [];
        _cache = new LatentKvCache(model.Config, model.Options, options.KvCacheBytes, options.PageSize);
        var allocator = new BlockAllocator(_cache.PageCount, _cache.PageSize);
        _scheduler = new Scheduler(allocator, options.MaxBatchTokens, options.MaxRunningSequences, options.PrefixCaching);
        MaxModelLength = new[] { model.Config.MaxPositionEmbeddings, _scheduler.MaxSequenceTokens, options.MaxModelLength ?? int.MaxValue }.Min();
    }

    /// <summary>Queues a sequence; throws <see cref="ArgumentException"/> for a prompt the engine cannot serve.</summary>
    public Sequence Add(IReadOnlyList<int> prompt, SamplingParams sampling)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty");
        if (sampling.MaxTokens < 1) throw new ArgumentException($"max_tokens must be at least 1, got {sampling.MaxTokens}");
        if ((long)prompt.Count + sampling.MaxTokens > MaxModelLength)
            throw new ArgumentException($"the prompt ({prompt.Count} tokens) plus max_tokens ({sampling.MaxTokens}) exceeds the maximum context length of {MaxModelLength} tokens");
        foreach (var t in prompt.Concat(sampling.LogitBias.Keys))
        {
            if (t < 0 || t >= _model.Config.VocabSize)
                throw new ArgumentException($"token id {t} is outside the vocabulary (0..{_model.Config.VocabSize - 1})");
        }
        if (sampling.RepetitionPenalty <= 0) throw new ArgumentException($"the repetition penalty must be positive, got {sampling.RepetitionPenalty}");
        if (sampling.Grammar is not null && _tokenizer is null) throw new ArgumentException("constrained output needs the model's tokenizer");
        var seq = new Sequence(_nextId++, prompt, sampling);
        _texts[seq.Id] = new OutputText(_tokenizer, sampling.Stop);
        _scheduler.Add(seq);
        return seq;
    }

    /// <summary>
    /// Leading whole pages of a prompt's reusable prefix (all but its last token) cached now, by hash alone.
    /// Safe from any thread; a hint (the loop may evict or add pages meanwhile).
    /// </summary>
    public int CachedPrefixPages(IReadOnlyList<int> prompt) => _scheduler.Allocator.CachedPrefixPages(prompt, prompt.Count - 1);

    /// <summary>
    /// Publishes pages computed elsewhere: page <paramref name="firstPage"/> onwards of <paramref name="tokens"/>,
    /// one payload each in <see cref="LatentKvCache.ReadPage"/>'s layout. Returns how many of them are cached
    /// afterwards (fewer when the prefix before them is gone or the cache is full).
    /// </summary>
    public int ImportPages(IReadOnlyList<int> tokens, int firstPage, IReadOnlyList<ReadOnlyMemory<byte>> payloads) =>
        _scheduler.Allocator.Import(tokens, firstPage, payloads.Count, (page, i) => _cache.WritePage(page, payloads[i].Span));

    /// <summary>
    /// The pages computed and published since the last call (with <see cref="EngineOptions.RecordComputedPages"/>);
    /// their contents stay valid until the next <see cref="Step"/>.
    /// </summary>
    public IReadOnlyList<CachedPage> TakeComputedPages()
    {
        if (_computedPages is not { Count: > 0 }) return [];
        var pages = _computedPages.ToList();
        _computedPages.Clear();
        return pages;
    }

    /// <summary>Frees the KV cache; the engine is not used afterwards.</summary>
    public void Dispose() => _cache.Dispose();

    /// <summary>Ends a sequence (client gone) and frees its cache pages.</summary>
    public void Abort(Sequence seq)
    {
        _scheduler.Finish(seq, FinishReason.Abort);
        _texts.Remove(seq.Id);
    }

    public IReadOnlyList<SequenceUpdate> Step()
    {
        var chunks = _scheduler.Schedule();
        if (chunks.Count == 0) return [];
        Tensor? logitsTensor;
        int[] firstRow;
        try
        {
            (logitsTensor, firstRow) = Forward(chunks);
        }
        catch (ExpertsUnavailableException e)
        {
            // Only the sequences whose tokens chose the missing experts end; the rest are not advanced
            // and run again next step (rewriting the same cache slots with the same values).
            return AffectedChunks(chunks, e.TokenRows).Select(c => Fail(c.Sequence, e.Message, FinishReason.Unavailable)).ToList();
        }
        catch (Exception e)
        {
            // A failed step (an expert backend error, out of device memory) ends its sequences, not the engine.
            var message = FailureMessage(e);
            return chunks.Select(c => Fail(c.Sequence, message)).ToList();
        }
        using (logitsTensor)
        {
            // Sampling reads the host tensor in place: copying 32 rows of a 32k vocabulary into a managed
            // array cost more than a millisecond per row through TorchSharp's element accessor.
            var logits = logitsTensor is null ? ReadOnlySpan<float>.Empty : MemoryMarshal.Cast<byte, float>(logitsTensor.bytes);
            var vocab = _model.Config.VocabSize;
            var updates = new List<SequenceUpdate>();
            for (var i = 0; i < chunks.Count; i++)
            {
                var chunk = chunks[i];
                var seq = chunk.Sequence;
                seq.ComputedTokens += chunk.Length;
                _scheduler.Computed(seq, _computedPages);
                var rows = firstRow[i + 1] - firstRow[i];
                if (seq.PromptLogprobs is not null && rows == chunk.Length)
                    RecordPromptLogprobs(seq, chunk, logits.Slice(firstRow[i] * vocab, rows * vocab));
                if (!chunk.Samples) continue;
                try
                {
                    updates.Add(Advance(seq, logits.Slice((firstRow[i + 1] - 1) * vocab, vocab)));
                }
                catch (Exception e)
                {
                    // Picking or decoding one sequence's token failed: that sequence ends, the others go on.
                    updates.Add(Fail(seq, FailureMessage(e)));
                }
            }
            return updates;
        }
    }

    /// <summary>Reports a failure through <see cref="StepFailed"/>; clients get a reference to it, not the exception's text.</summary>
    private string FailureMessage(Exception e)
    {
        var reference = Guid.NewGuid().ToString("N")[..12];
        StepFailed?.Invoke(e, reference);
        return $"internal error (reference {reference}; the server log has the details)";
    }

    /// <summary>The chunks owning the given rows of the batch (rows are laid out chunk after chunk).</summary>
    private static List<ScheduledChunk> AffectedChunks(IReadOnlyList<ScheduledChunk> chunks, IReadOnlyList<int> rows)
    {
        var affected = new List<ScheduledChunk>();
        var start = 0;
        foreach (var c in chunks)
        {
            var end = start + c.Length;
            if (rows.Any(r => r >= start && r < end)) affected.Add(c);
            start = end;
        }
        return affected;
    }

    /// <summary>Runs the model; returns the logits rows as a contiguous host tensor (null when no row is wanted) and, per chunk, its first row.</summary>
    private (Tensor? Logits, int[] FirstRow) Forward(IReadOnlyList<ScheduledChunk> chunks)
    {
        using var scope = NewDisposeScope();
        var device = _model.Options.Device;
        var batchDecodes = _model.AttentionMode != AttentionMode.Naive;
        var rows = new List<long>();
        var firstRow = new int[chunks.Count + 1];
        var offset = 0;
        for (var i = 0; i < chunks.Count; i++)
        {
            var c = chunks[i];
            firstRow[i] = rows.Count;
            var wantsPrompt = c.Sequence.PromptLogprobs is not null && c.Start < c.Sequence.PromptLength - 1;
            if (wantsPrompt) rows.AddRange(Enumerable.Range(offset, c.Length).Select(r => (long)r));
            else if (c.Samples) rows.Add(offset + c.Length - 1);
            offset += c.Length;
        }
        firstRow[chunks.Count] = rows.Count;
        var logitRows = tensor(rows.Count == 0 ? [0L] : rows.ToArray(), device: device);
        Tensor logits;
        var split = _microBatches >= 2 && chunks.Count >= 2 ? BalancedSplit(chunks) : 0;
        if (split > 0 && Math.Min(chunks.Take(split).Sum(c => c.Length), chunks.Skip(split).Sum(c => c.Length)) >= _microBatchMinTokens)
        {
            using var a = BatchBuilder.Build(chunks.Take(split).ToList(), _scheduler.Allocator, device, batchDecodes);
            using var b = BatchBuilder.Build(chunks.Skip(split).ToList(), _scheduler.Allocator, device, batchDecodes);
            logits = _model.Forward(a, b, _cache, logitRows);
        }
        else
        {
            using var batch = BatchBuilder.Build(chunks, _scheduler.Allocator, device, batchDecodes);
            logits = _model.Forward(batch, _cache, logitRows);
        }
        return rows.Count == 0 ? (null, firstRow) : (logits.cpu().contiguous().MoveToOuterDisposeScope(), firstRow);
    }

    /// <summary>Where to cut the chunks into two micro-batches of about the same number of tokens (at least one chunk each).</summary>
    internal static int BalancedSplit(IReadOnlyList<ScheduledChunk> chunks)
    {
        var total = chunks.Sum(c => c.Length);
        int best = 1, bestGap = int.MaxValue, before = 0;
        for (var i = 1; i < chunks.Count; i++)
        {
            before += chunks[i - 1].Length;
            var gap = Math.Abs(total - 2 * before);
            if (gap < bestGap)
            {
                best = i;
                bestGap = gap;
            }
        }
        return best;
    }

    private void RecordPromptLogprobs(Sequence seq, ScheduledChunk chunk, ReadOnlySpan<float> logits)
    {
        var vocab = _model.Config.VocabSize;
        var top = seq.Params.PromptLogprobs ?? 0;
        for (var i = 0; i < chunk.Length; i++)
        {
            var target = chunk.Start + i + 1;
            if (target >= seq.PromptLength) break;
            seq.PromptLogprobs![target] ??= Sampler.Logprobs(logits.Slice(i * vocab, vocab), seq.Tokens[target], top);
        }
    }

    private SequenceUpdate Advance(Sequence seq, ReadOnlySpan<float> logits)
    {
        var p = seq.Params;
        var adjusted = LogitsAdjuster.Apply(logits, p, seq.History);
        if (seq.Grammar is { } grammar)
        {
            // Into a buffer the engine keeps (a vocabulary of floats a token would otherwise be a large-object allocation).
            var masked = _masked is { } m && m.Length == logits.Length ? m : _masked = new float[logits.Length];
            var source = adjusted ?? logits;
            var mayEnd = grammar.MayEnd && !p.IgnoreEos && EosTokenId is { } eos && eos < masked.Length;
            if (!Constrain(source, masked, Masks.Allowed(grammar)) && !mayEnd) return Fail(seq, "the output grammar allows no token here");
            // Where the grammar may end here, so may the model: its end-of-sequence token stays allowed.
            if (mayEnd) masked[EosTokenId!.Value] = source[EosTokenId.Value];
            adjusted = masked;
        }
        var token = adjusted is null ? Sampler.Sample(logits, p, seq.Random) : Sampler.Sample(adjusted, p, seq.Random);
        // Log-probabilities are the raw distribution's, as with logit_bias.
        var logprob = p.Logprobs is { } top ? Sampler.Logprobs(logits, token, top) : null;
        GrammarState? next = null;
        if (seq.Grammar is { } state)
        {
            next = TokenMasks.Advance(state, _tokenizer!.TokenBytes(token, skipSpecialTokens: true));
            if (next is null) return Fail(seq, $"token {token} was sampled outside the output grammar");
            seq.Grammar = next;
        }
        seq.Append(token);
        // The grammar ends the output once complete (a JSON object closed); the token that completed it is output text.
        var complete = next?.IsComplete == true;
        var stopToken = !complete && ((!p.IgnoreEos && token == EosTokenId) || seq.StopTokenIds?.Contains(token) == true);
        var length = seq.OutputLength >= p.MaxTokens || seq.Length >= MaxModelLength;
        var text = _texts[seq.Id];
        var (delta, stopString) = text.Update(seq.Tokens, seq.PromptLength, stopToken ? seq.Length - 1 : seq.Length, stopToken || length || complete);
        if (complete)
        {
            _scheduler.Finish(seq, FinishReason.Stop);
            _texts.Remove(seq.Id);
        }
        else if (stopString || stopToken || length)
        {
            _scheduler.Finish(seq, length && !stopString && !stopToken ? FinishReason.Length : FinishReason.Stop);
            _texts.Remove(seq.Id);
        }
        return new SequenceUpdate(seq, token, logprob, delta, seq.IsFinished);
    }

    /// <summary>The token masks of constrained sequences, from the tokenizer's vocabulary.</summary>
    internal TokenMasks Masks => _masks!.GetAwaiter().GetResult();

    private readonly Task<TokenMasks>? _masks;

    private static TokenMasks BuildMasks(HfTokenizer tokenizer, int vocabularySize)
    {
        var masks = new TokenMasks(tokenizer, vocabularySize);
        // The tokens that stay inside a JSON string: the one large search a JSON object's masks need.
        masks.Allowed(TokenMasks.Advance(JsonObjectGrammar.Instance.Start(), "{\""u8)!);
        return masks;
    }

    private float[]? _masked;

    /// <summary>
    /// Writes the logits with every token the mask forbids at minus infinity: the buffer filled with minus infinity
    /// (vectorised), then the allowed tokens' logits copied over, a whole word's run at once where all 64 are allowed.
    /// False where the mask forbids every token.
    /// </summary>
    private static bool Constrain(ReadOnlySpan<float> logits, float[] into, ulong[] mask)
    {
        Array.Fill(into, float.NegativeInfinity);
        var any = false;
        for (var w = 0; w < mask.Length; w++)
        {
            var bits = mask[w];
            if (bits == 0) continue;
            var start = w * 64;
            if (start >= logits.Length) break;
            any = true;
            if (bits == ulong.MaxValue && start + 64 <= logits.Length)
            {
                logits.Slice(start, 64).CopyTo(into.AsSpan(start, 64));
                continue;
            }
            for (; bits != 0; bits &= bits - 1)
            {
                var i = start + System.Numerics.BitOperations.TrailingZeroCount(bits);
                if (i < logits.Length) into[i] = logits[i];
            }
        }
        return any;
    }

    private SequenceUpdate Fail(Sequence seq, string error, FinishReason reason = FinishReason.Error)
    {
        _scheduler.Finish(seq, reason, error);
        _texts.Remove(seq.Id);
        return new SequenceUpdate(seq, null, null, "", true);
    }
}
