module tether.dev/interop

go 1.26.8
