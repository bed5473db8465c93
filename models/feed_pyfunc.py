"""What MLflow runs to build the feed model when a version is loaded ("models from code").

`save_feed_model` logs this file instead of a pickled `FeedModel`, so loading a registered
version unpickles nothing: MLflow executes these lines, and `FeedModel.load_context` reads the
artifacts (LightGBM text, npz, JSON).
"""

from mlflow.models import set_model

from models.feed_model import FeedModel

set_model(FeedModel())
