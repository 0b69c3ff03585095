module github.com/enflow/enflow

go 1.26.8
