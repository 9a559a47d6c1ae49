"""The training tests need only the training image: build it alone (through deploy.images, as the shared
`built_images` fixture does), so they do not wait for or depend on the serving image's build."""

import pytest

from deploy import images


@pytest.fixture(scope="session")
def train_image(docker_client) -> str:
    return images.build("train", client=docker_client).tag
