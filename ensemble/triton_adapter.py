"""The one Triton-facing class behind every Python-backend ``model.py``.

Only this module touches ``triton_python_backend_utils`` (importable inside Triton's
Python-backend stub only); the logic it calls lives in :mod:`ensemble.serving`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from .serving import BUILDERS, Service, check_tensors, process


def make_model(kind: str) -> type:
    """Return a ``TritonPythonModel`` class serving ``kind`` (a key of BUILDERS). Loading
    fails, naming the model, when its config's tensors are not the contract's or a
    parameter is unknown or bad (:mod:`ensemble.params`)."""
    import numpy as np
    import triton_python_backend_utils as pb_utils

    def _bls(model: str, input_name: str, output_name: str) -> Callable[[np.ndarray], np.ndarray]:
        """A RawNet that runs ``model`` through BLS, outputs requested in CPU memory."""

        def net(x: np.ndarray) -> np.ndarray:
            request = pb_utils.InferenceRequest(
                model_name=model,
                inputs=[pb_utils.Tensor(input_name, np.ascontiguousarray(x, np.float32))],
                requested_output_names=[output_name],
                preferred_memory=pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_CPU, 0),
            )
            response = request.exec()
            if response.has_error():
                raise RuntimeError(f"{model}: {response.error().message()}")
            result: np.ndarray = pb_utils.get_output_tensor_by_name(
                response, output_name
            ).as_numpy()
            return result

        return net

    class TritonPythonModel:
        service: Service
        input_names: list[str]

        def initialize(self, args: dict[str, str]) -> None:
            logging.basicConfig(level=logging.INFO)
            config = json.loads(args["model_config"])
            check_tensors(kind, config)  # then the builder validates the typed parameters
            self.input_names = [i["name"] for i in config["input"]]
            self.output_dtypes = {
                o["name"]: pb_utils.triton_string_to_numpy(o["data_type"]) for o in config["output"]
            }
            self.service = BUILDERS[kind](args, config, _bls)

        def execute(self, requests: list[Any]) -> list[Any]:
            batch = []
            for request in requests:
                inputs: dict[str, np.ndarray | None] = {}
                for name in self.input_names:
                    tensor = pb_utils.get_input_tensor_by_name(request, name)
                    inputs[name] = None if tensor is None else tensor.as_numpy()
                batch.append(inputs)
            responses = []
            for request, reply in zip(requests, process(self.service, batch), strict=True):
                if reply.error is not None or reply.outputs is None:
                    responses.append(
                        pb_utils.InferenceResponse(error=pb_utils.TritonError(reply.error or "?"))
                    )
                    continue
                # only what the client asked for: optional outputs (e.g. PLATE_ALT_*) cost
                # nothing for clients that do not request them
                wanted = set(request.requested_output_names()) or set(reply.outputs)
                tensors = [
                    pb_utils.Tensor(name, value.astype(self.output_dtypes[name], copy=False))
                    for name, value in reply.outputs.items()
                    if name in wanted
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            return responses

        def finalize(self) -> None:
            self.service = None  # type: ignore[assignment]

    TritonPythonModel.__name__ = f"TritonPythonModel[{kind}]"
    return TritonPythonModel
