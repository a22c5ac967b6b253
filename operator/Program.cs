// The MoeDeployment operator (group moemesh.dev, version v1alpha1) is built in the operator release;
// this entry point fixes the project's place in the solution and its command name.
Console.WriteLine("moemesh-operator: reconciles MoeDeployment resources (moemesh.dev/v1alpha1); the controller ships in the operator release.");
return args.Contains("--help") ? 0 : 2;
