"""The official SDK's client flavours, pointed at a server under test.

openai    OpenAI(base_url=…/v1)
azure     AzureOpenAI(azure_endpoint=…, api_version=…)  → …/openai/…?api-version=…
azure_v1  OpenAI(base_url=…/openai/v1/), Azure's v1 path (the Responses face only: contract §2)
"""

from __future__ import annotations

from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI

AZURE_API_VERSION = "2024-05-01-preview"


def make_client(flavour: str, base: str, key: str, **options):
    if flavour == "openai":
        return OpenAI(base_url=base + "/v1", api_key=key, **options)
    if flavour == "azure_v1":
        return OpenAI(base_url=base + "/openai/v1/", api_key=key, **options)
    return AzureOpenAI(azure_endpoint=base, api_version=AZURE_API_VERSION, api_key=key, **options)


def make_async_client(flavour: str, base: str, key: str, **options):
    if flavour == "openai":
        return AsyncOpenAI(base_url=base + "/v1", api_key=key, **options)
    if flavour == "azure_v1":
        return AsyncOpenAI(base_url=base + "/openai/v1/", api_key=key, **options)
    return AsyncAzureOpenAI(azure_endpoint=base, api_version=AZURE_API_VERSION, api_key=key, **options)
