package grpcserver

import (
	"fmt"
	"os"
	"runtime/pprof"
)

// ProfileCPU writes a CPU profile of the whole process to path until the
// returned stop is called, for `go tool pprof`. Services take the path from
// FERRY_CPU_PROFILE; the benchmark sets it to see where delivery's time goes.
func ProfileCPU(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("creating the CPU profile %s: %w", path, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting the CPU profile %s: %w", path, err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing the CPU profile %s: %w", path, err)
		}
		return nil
	}, nil
}

// RunUntilSignalProfiled is RunUntilSignal that, when cpuProfile is set,
// writes a CPU profile of the whole run there (for the benchmark; off in
// production).
func (s *Server) RunUntilSignalProfiled(addr, cpuProfile string) (err error) {
	if cpuProfile == "" {
		return s.RunUntilSignal(addr)
	}
	stop, err := ProfileCPU(cpuProfile)
	if err != nil {
		return err
	}
	defer func() {
		if perr := stop(); perr != nil && err == nil {
			err = perr
		}
	}()
	return s.RunUntilSignal(addr)
}
