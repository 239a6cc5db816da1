module github.com/cvs-tool/cvs

go 1.26.8
