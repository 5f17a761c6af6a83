"""Request bodies of the chat completions and embeddings APIs.

These calls are relayed, so a top-level field this file does not know (a new OpenAI parameter, a server's
own extension such as vLLM's `top_k`) is passed on to the upstream as sent, and ignored by the local model;
so are unknown keys of an assistant message (an app that sends back the message it was given sends its
`annotations` and `audio` too). Everything else is checked strictly, with the OpenAI wording for a bad
value, as OpenAI checks it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.schemas.common import (
    FunctionDefinition,
    Metadata,
    ModelName,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
    Strict,
    Temperature,
    TopP,
)


class Open(BaseModel):
    """Known fields strictly typed; unknown ones kept, to be passed on."""

    model_config = ConfigDict(extra="allow", strict=True)


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImageUrl(Strict):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageUrl


class InputAudio(Strict):
    data: str
    format: Literal["wav", "mp3"]


class AudioPart(Strict):
    type: Literal["input_audio"]
    input_audio: InputAudio


class FileRef(Strict):
    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(Strict):
    type: Literal["file"]
    file: FileRef


class RefusalPart(Strict):
    type: Literal["refusal"]
    refusal: str


UserPart = Annotated[TextPart | ImagePart | AudioPart | FilePart, Field(discriminator="type")]
AssistantPart = Annotated[TextPart | RefusalPart, Field(discriminator="type")]
Texts = Annotated[list[TextPart], Field(min_length=1)]


class CalledFunction(Strict):
    name: str
    arguments: str


class ToolCall(Strict):
    id: str
    type: Literal["function"] = "function"
    function: CalledFunction


class SystemMessage(Strict):
    role: Literal["system", "developer"]
    content: str | Texts
    name: str | None = None


class UserMessage(Strict):
    role: Literal["user"]
    content: str | Annotated[list[UserPart], Field(min_length=1)]
    name: str | None = None


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: str | list[AssistantPart] | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None
    name: str | None = None


class ToolMessage(Strict):
    role: Literal["tool"]
    content: str | Texts
    tool_call_id: str


class FunctionMessage(Strict):
    role: Literal["function"]
    content: str | None
    name: str


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolMessage | FunctionMessage,
    Field(discriminator="role"),
]


class FunctionTool(Strict):
    type: Literal["function"]
    function: FunctionDefinition


class CustomDefinition(Strict):
    name: Annotated[str, Field(min_length=1)]
    description: str | None = None
    format: dict[str, Any] | None = None


class CustomTool(Strict):
    type: Literal["custom"]
    custom: CustomDefinition


Tool = Annotated[FunctionTool | CustomTool, Field(discriminator="type")]


class NamedFunction(Strict):
    name: str


class NamedFunctionChoice(Strict):
    type: Literal["function"]
    function: NamedFunction


class OtherToolChoice(Open):
    """`allowed_tools` and `custom` choices: passed on; the local model reads them as "auto"."""

    type: Literal["allowed_tools", "custom"]


ToolChoice = (
    Literal["none", "auto", "required"]
    | Annotated[NamedFunctionChoice | OtherToolChoice, Field(discriminator="type")]
    | None
)
ResponseFormat = (
    Annotated[
        ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema,
        Field(discriminator="type"),
    ]
    | None
)


class StreamOptions(Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


Tokens = Annotated[int, Field(ge=1, le=2**31 - 1)] | None
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)] | None
Stop = str | Annotated[list[str], Field(max_length=4)] | None


class CreateChatCompletion(Open):
    # Under an Azure deployment path the deployment names the model (the view puts it here).
    model: ModelName
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat = None
    max_completion_tokens: Tokens = None
    max_tokens: Tokens = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    stop: Stop = None
    temperature: Temperature = None
    top_p: TopP = None
    presence_penalty: Penalty = None
    frequency_penalty: Penalty = None
    seed: int | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None
    user: str | None = None
    metadata: Metadata = None
    store: bool | None = None


EmbeddingText = Annotated[str, Field(min_length=1)]
TokenArray = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]
EmbeddingInput = (
    EmbeddingText
    | Annotated[list[EmbeddingText], Field(min_length=1, max_length=2048)]
    | TokenArray
    | Annotated[list[TokenArray], Field(min_length=1, max_length=2048)]
)


class CreateEmbedding(Open):
    model: ModelName
    input: EmbeddingInput
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, Field(ge=1, le=65536)] | None = None
    user: str | None = None
