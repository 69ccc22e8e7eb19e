"""`python -m operators.embed onnx|openvino|static [--model DIR] [--out DIR]`: build an artefact."""

from operators.embed.backends import main

main()
