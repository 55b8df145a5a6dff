package hostiletest

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// TestExamplesAreValid: every generator writes a module wazero validates,
// so that what a test calls a table bomb is one, not a decoding error.
func TestExamplesAreValid(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCoreFeatures(api.CoreFeaturesV2))
	defer r.Close(ctx)
	for _, ex := range Examples() {
		if _, err := r.CompileModule(ctx, ex.Wasm); err != nil {
			t.Errorf("%s: %v", ex.Name, err)
		}
	}
}
