"""The official SDK's two client flavours, pointed at a server under test."""

from __future__ import annotations

from openai import AsyncAzureOpenAI, AsyncOpenAI, AzureOpenAI, OpenAI


def make_client(flavour: str, base: str, key: str, **options):
    if flavour == "openai":
        return OpenAI(base_url=base + "/v1", api_key=key, **options)
    if flavour == "azure-v1":  # Azure's v1 path, as its Responses documentation points the OpenAI client
        return OpenAI(base_url=base + "/openai/v1/", api_key=key, **options)
    return AzureOpenAI(azure_endpoint=base, api_version="2024-05-01-preview", api_key=key, **options)


def make_async_client(flavour: str, base: str, key: str, **options):
    if flavour == "openai":
        return AsyncOpenAI(base_url=base + "/v1", api_key=key, **options)
    if flavour == "azure-v1":
        return AsyncOpenAI(base_url=base + "/openai/v1/", api_key=key, **options)
    return AsyncAzureOpenAI(azure_endpoint=base, api_version="2024-05-01-preview", api_key=key, **options)
