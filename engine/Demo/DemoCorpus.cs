namespace MoeMesh.Engine.Demo;

/// <summary>Text the demo tokenizer's merges are learned from.</summary>
internal static class DemoCorpus
{
    public const string Text = """
        MoeMesh serves mixture-of-experts language models. The gateway runs attention, the routers,
        the shared experts and the language model head, and it sends each token to the experts that
        its router chose. Expert nodes hold the routed experts and return one combined vector per token.
        The latent cache holds the compressed keys and values of every token of every sequence, in pages.
        A scheduler forms each batch from the running sequences and the waiting prompts, under a token
        budget, and the sampler picks the next token with the temperature, top-k and top-p the request asked for.
        Hello, world! How are you today? I am fine, thank you. The quick brown fox jumps over the lazy dog.
        Once upon a time, there was a model that could answer questions, write stories and explain ideas.
        What is the capital of France? The capital of France is Paris. What is two plus two? It is four.
        Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 256 1024 2048 4096 32000 65536.
        Code: def add(a, b): return a + b; for (int i = 0; i < n; i++) { sum += x[i]; }
        The experts of every layer are spread over the nodes; a node that fails is replaced by a replica.
        Tokens per second, time to first token, inter-token latency and the cache usage are exported as metrics.
        你好，世界。こんにちは。カタカナ。
        """;
}
