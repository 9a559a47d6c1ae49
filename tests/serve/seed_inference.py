"""A handler script written the way the seed project wrote its own (infernce2.py, see
reference/seed-anchors.md): the seed's network built in model_fn, model.pth loaded with torch, an input_fn
for image/jpeg, a predict_fn that resizes to 224x224 and returns the logits tensor, and no output_fn, so the
default encoder answers. Two lines differ from the seed's, each one of its known bugs: the backbone is built
with weights=None (the seed downloaded ImageNet weights at every start, then overwrote them), and the input
goes to the model's device (the seed's did not, and failed on a GPU).

tests/serve/test_seed_handler.py serves it in the compatibility build and calls it directly on the host.
"""

import io
import os

import torch
import torch.nn as nn
import torchvision.models as models
import torchvision.transforms as transforms
from PIL import Image

JPEG_CONTENT_TYPE = "image/jpeg"
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def Net():
    model = models.resnet50(weights=None)
    for param in model.parameters():
        param.requires_grad = False
    model.fc = nn.Sequential(nn.Linear(2048, 128), nn.ReLU(inplace=True), nn.Linear(128, 133))
    return model


def model_fn(model_dir):
    model = Net().to(device)
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        checkpoint = torch.load(f, map_location=device)
        model.load_state_dict(checkpoint)
    model.eval()
    return model


def input_fn(request_body, content_type=JPEG_CONTENT_TYPE):
    if content_type == JPEG_CONTENT_TYPE:
        return Image.open(io.BytesIO(request_body))
    raise Exception(f"Requested unsupported ContentType in content_type: {content_type}")


def predict_fn(input_object, model):
    test_transform = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor()])
    input_object = test_transform(input_object)
    with torch.no_grad():
        prediction = model(input_object.unsqueeze(0).to(device))
    return prediction
