# Shortcuts for those who have make; the README's commands are script/demo and script/test.
.PHONY: demo test bootstrap
demo:
	script/demo
test:
	script/test
bootstrap:
	script/bootstrap
