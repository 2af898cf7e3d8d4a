package main

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

// RandomPassword is random:index/randomPassword:RandomPassword, declared with the core SDK
// (the pulumi-random Go SDK is not served by the module proxy here).
type RandomPassword struct {
	pulumi.CustomResourceState
	Result pulumi.StringOutput `pulumi:"result"`
}

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg := config.New(ctx, "")
		var password RandomPassword
		err := ctx.RegisterResource("random:index/randomPassword:RandomPassword", "password",
			pulumi.Map{"length": pulumi.Int(cfg.RequireInt("length")), "special": pulumi.Bool(false)},
			&password, pulumi.Version("4.21.4"))
		if err != nil {
			return err
		}
		fmt.Println("hello from the Go program")
		ctx.Export("passwordLength", password.Result.ApplyT(func(s string) int { return len(s) }))
		ctx.Export("token", cfg.RequireSecret("token"))
		return nil
	})
}
