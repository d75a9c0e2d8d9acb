"""Tools around a trained model: its demo signal, a training diagnostic, its model card."""
