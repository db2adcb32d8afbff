// Package sdkpin only exists to keep github.com/sftpgo/sdk in go.mod and
// go.sum, so later interop fixtures can build against SFTPGo's plugin SDK
// without another `go get`. Nothing imports this package.
package sdkpin

import (
	_ "github.com/sftpgo/sdk"
	_ "github.com/sftpgo/sdk/plugin/notifier"
)
