using MoeMesh.ExpertNode.Serving;

namespace MoeMesh.ExpertNode.Tests.Serving;

public sealed class BoundedBodyTests
{
    private static Stream Body(int length) => new MemoryStream(Enumerable.Range(0, length).Select(i => (byte)i).ToArray());

    [Fact]
    public async Task Body_IsReadWhole_UpToTheLimit()
    {
        var body = await BoundedBody.ReadAsync(Body(300_000), 300_000, 300_000, CancellationToken.None);
        Assert.Equal(Enumerable.Range(0, 300_000).Select(i => (byte)i), body.ToArray());
        Assert.Equal(5, (await BoundedBody.ReadAsync(Body(5), null, 10, CancellationToken.None)).Length);
        Assert.Equal(0, (await BoundedBody.ReadAsync(Body(0), 0, 10, CancellationToken.None)).Length);
    }

    [Fact]
    public async Task BodyPastTheLimit_IsRefused_DeclaredOrNot()
    {
        await Assert.ThrowsAsync<BodyTooLargeException>(() => BoundedBody.ReadAsync(Body(0), 11, 10, CancellationToken.None));
        await Assert.ThrowsAsync<BodyTooLargeException>(() => BoundedBody.ReadAsync(Body(11), null, 10, CancellationToken.None));
        await Assert.ThrowsAsync<BodyTooLargeException>(() => BoundedBody.ReadAsync(Body(11), 10, 10, CancellationToken.None));
        // Within the limit but not what the header said.
        await Assert.ThrowsAsync<InvalidDataException>(() => BoundedBody.ReadAsync(Body(11), 5, 10, CancellationToken.None));
        await Assert.ThrowsAsync<InvalidDataException>(() => BoundedBody.ReadAsync(Body(4), 5, 10, CancellationToken.None));
    }

    [Fact]
    public async Task AnnouncedLength_IsNotAllocatedBeforeTheBytesArrive()
    {
        // 400 MB announced, 10 bytes sent: memory follows what arrived, not what was announced.
        var before = GC.GetAllocatedBytesForCurrentThread();
        await Assert.ThrowsAsync<InvalidDataException>(() => BoundedBody.ReadAsync(Body(10), 400_000_000, 500_000_000, CancellationToken.None));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, $"{GC.GetAllocatedBytesForCurrentThread() - before} bytes allocated");
    }
}
