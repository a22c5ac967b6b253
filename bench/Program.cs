using TorchSharp;
var a = torch.randn(1024, 1024);
var b = torch.randn(1024, 256);
Console.WriteLine(torch.mm(a, b).sum().item<float>());
