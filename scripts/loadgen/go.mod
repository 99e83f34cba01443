module muster/loadgen

go 1.19
